"""``compare_attributions`` and ``captum-baselines compare`` under
``torch.distributed``: two CPU processes on gloo.

Two fresh Python processes (``_worker``), started once for the module, join a
gloo process group through a file store and run ``compare_attributions`` in
turn: on the same arguments, without a ``batch_size``, on different inputs, and
with rank 1 raising.  Then each runs the command line as ``torchrun`` would start
it (``WORLD_SIZE``, ``RANK``, ... in the environment; the command joins its own
process group): once as it should, each rank with its own ``--out``, and once
with rank 1 unable to build the model.  Last, rank 1 dies inside a method.  They
write what they got to files that the tests compare with single-process runs.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from captum.attr import IntegratedGradients, Saliency
from torch.utils.data import TensorDataset

from captum_baselines.attr import ExpectedGradients
from captum_baselines.cli import main
from captum_baselines.distributed import digest, process_group_from_environment
from captum_baselines.metrics.compare import (
    CURVES,
    ComparisonResult,
    batch_generator,
    compare_attributions,
)
from captum_baselines.study import figures
from tests.helpers import run_ranks, small_cnn

WORLD = 2
TIMEOUT_S = 10  # the process group's: the longest a rank may wait for the other
HANG_S = 300  # the most the tests wait for a pair of processes

pytestmark = [
    pytest.mark.skipif(
        not (dist.is_available() and dist.is_gloo_available()),
        reason="torch.distributed with gloo is not available",
    ),
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already"),
]


def tiny_model() -> torch.nn.Module:
    """The model of the command-line runs (``--model tests.…:tiny_model``); it
    cannot be built on the rank named by ``FAIL_ON_RANK``."""
    if os.environ.get("FAIL_ON_RANK", "none") == os.environ.get("RANK"):
        raise RuntimeError("this rank cannot build the model")
    return small_cnn(seed=0)


def _model() -> torch.nn.Module:
    return small_cnn(seed=0).double()


def _inputs() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(11, 3, 8, 8, generator=generator, dtype=torch.float64)


TARGETS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2])


def _methods(model: torch.nn.Module, fail: int | None = None) -> dict:
    """A complete method, two random ones (drawing from their ``generator``):
    Expected Gradients with a ``Dataset`` of references, which every rank reads
    whole, and a noisy saliency; and a plain one; ``fail`` makes the plain one
    raise (``-1``) or the process exit (``-2``)."""
    ig = IntegratedGradients(model)
    eg = ExpectedGradients(model)
    references = TensorDataset(
        torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(2)).double(),
        torch.arange(6),
    )

    def expected_gradients(x, target, generator):
        return eg.attribute(
            x,
            references,
            4,
            target=target,
            generator=generator,
            return_convergence_delta=True,
        )

    def noisy_saliency(x, target, generator):
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype)
        return Saliency(model).attribute(x, target=target) * noise

    def saliency(x, target):
        if fail == -1:
            raise RuntimeError("rank one fails on purpose")
        if fail == -2:
            os._exit(3)
        return Saliency(model).attribute(x, target=target)

    return {
        "IG": lambda x, target: ig.attribute(
            x, baselines=0 * x, target=target, n_steps=4, return_convergence_delta=True
        ),
        "EG (Dataset)": expected_gradients,
        "noisy saliency": noisy_saliency,
        "saliency": saliency,
    }


def _compare(
    inputs: torch.Tensor | None = None, batch_size: int | None = 3, fail=None
) -> ComparisonResult | None:
    model = _model()
    return compare_attributions(
        model,
        _inputs() if inputs is None else inputs,
        TARGETS,
        _methods(model, fail),
        curves=CURVES,
        patch_size=4,
        generator=torch.Generator().manual_seed(7),
        batch_size=batch_size,
        show_progress=False,
    )


def _contents(result: ComparisonResult) -> dict:
    """Everything a result holds but the wall-clock seconds."""
    table = [  # NaN (no delta) as None, which compares equal to itself
        {k: None if v != v else v for k, v in row.items() if k != "seconds"}
        for row in result.table()
    ]
    per_method = {
        name: (r.attributions, r.delta, r.curves, r.auc)
        for name, r in result.methods.items()
    }
    return {"table": table, "methods": per_method, "seed": result.seed}


def _worker(rank: int, folder: str, ports: str) -> None:
    """One rank: compares in every mode in turn and writes what it got."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    out = Path(folder)
    with _file_store_group(rank, out / "store"):
        result = _compare()
        contents = None if result is None else _contents(result)
        torch.save(contents, out / f"result-{rank}.pt")
        _record_error(out / f"unbatched-{rank}.txt", _compare, batch_size=None)
        _record_error(out / f"different-{rank}.txt", _compare, inputs=_inputs() + rank)
        _record_error(out / f"raises-{rank}.txt", _compare, fail=-rank)
    shared, failing = ports.split(",")
    _run_command_line(rank, shared, out / "shared", out / f"shared-{rank}")
    os.environ["FAIL_ON_RANK"] = "1"
    _run_command_line(rank, failing, out / "failing", out / f"failing-{rank}")
    with _file_store_group(rank, out / "store-2"):
        _record_error(out / f"crash-{rank}.txt", _compare, fail=-2 * rank)


@contextlib.contextmanager
def _file_store_group(rank: int, store: Path) -> Iterator[None]:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def _run_command_line(rank: int, port: str, out: Path, log: Path) -> None:
    """``captum-baselines compare`` as torchrun starts it; its exit status and
    stderr go to ``log``."""
    os.environ.update(
        WORLD_SIZE=str(WORLD),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=port,
    )
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(_command_line(out / f"out-{rank}", out.parent / "images.pt"))
    log.write_text(f"{status}\n{stderr.getvalue()}")


def _command_line(out: Path, images: Path) -> list[str]:
    # fmt: off
    return [
        "compare", "--model", "tests.test_distributed_compare:tiny_model",
        "--images", str(images), "--targets", "1",
        "--methods", "ig-black", "ig-uniform", "ig-training", "eg", "pgig",
        "--n-steps", "4", "--n-baselines", "2", "--n-samples", "4",
        "--threads", "1", "--no-progress", "--dist-timeout", str(TIMEOUT_S),
        "--out", str(out),
    ]  # fmt: on


def _record_error(path: Path, run, **kwargs) -> None:  # type: ignore[no-untyped-def]
    try:
        run(**kwargs)
        path.write_text("no error")
    except Exception as error:
        path.write_text(f"{type(error).__name__}: {error}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Runs both ranks of ``_worker`` once; returns their folder, exit codes,
    stderr and seconds."""
    out = tmp_path_factory.mktemp("distributed-compare")
    torch.save(_images(), out / "images.pt")
    ports = f"{_free_port()},{_free_port()}"
    codes, errors, seconds = run_ranks(
        "tests.test_distributed_compare", [str(out), ports], WORLD, HANG_S
    )
    return out, codes, errors, seconds


def test_a_distributed_comparison_equals_a_single_process_one(ranks):
    out, codes, errors, _ = ranks
    assert codes[0] == 0, errors[0]
    expected = _contents(_compare())
    got = torch.load(out / "result-0.pt", weights_only=False)
    assert torch.load(out / "result-1.pt", weights_only=False) is None
    assert got["seed"] == expected["seed"]
    assert got["table"] == expected["table"]  # exactly: the same floats
    for name, (attributions, delta, curves, auc) in expected["methods"].items():
        got_attributions, got_delta, got_curves, got_auc = got["methods"][name]
        assert torch.equal(got_attributions, attributions), name
        assert (got_delta is None) == (delta is None)
        assert delta is None or torch.equal(got_delta, delta)
        for curve in curves:
            assert torch.equal(got_curves[curve], curves[curve]), (name, curve)
            assert torch.equal(got_auc[curve], auc[curve]), (name, curve)


def test_the_batch_size_is_required_and_the_ranks_must_agree(ranks):
    out = ranks[0]
    for rank in range(WORLD):
        unbatched = (out / f"unbatched-{rank}.txt").read_text()
        assert unbatched.startswith("ValueError: `batch_size` must be given")
        different = (out / f"different-{rank}.txt").read_text()
        assert different == (
            "ValueError: compare_attributions: the ranks were given different "
            "inputs; every rank must be called with the same arguments"
        )


def test_a_failing_rank_makes_every_rank_raise(ranks):
    out = ranks[0]
    # It re-raises its own error; the other says which rank failed.
    assert (out / "raises-1.txt").read_text() == (
        "RuntimeError: rank one fails on purpose"
    )
    assert (out / "raises-0.txt").read_text() == (
        "DistributedError: compare_attributions failed on rank(s) [1] (see their "
        "error); rank 0 stops too"
    )


def test_a_dead_rank_ends_the_other_with_a_clear_error(ranks):
    out, codes, errors, seconds = ranks
    assert codes == [0, 3], errors  # rank 1 exited inside a method
    message = (out / "crash-0.txt").read_text()
    assert message.startswith(
        "DistributedError: compare_attributions on rank 0: exchanging each "
        "rank's status failed; another rank probably died"
    )
    assert seconds < HANG_S


# ---------------------------------------------------------------------------
# The command line as torchrun starts it


def _images() -> torch.Tensor:
    return torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(2))


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [
            {k: v for k, v in row.items() if k != "seconds"}
            for row in csv.DictReader(f)
        ]


def test_the_command_line_on_two_ranks_writes_the_single_process_table_once(
    ranks, tmp_path, monkeypatch
):
    out = ranks[0] / "shared"
    for rank in range(WORLD):
        status = (ranks[0] / f"shared-{rank}").read_text()
        assert status.startswith("0\n"), status
    assert not (out / "out-1").exists()  # rank 1 writes nothing
    written = {p.name for p in (out / "out-0").iterdir()}
    assert {"results.md", "results.csv", "results.json"} <= written
    assert any(name.endswith(".png") for name in written)
    # The same command in this process alone (figures skipped: only the table
    # is compared).
    monkeypatch.setattr(figures, "write_figures", lambda *args: None)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(_command_line(tmp_path, ranks[0] / "images.pt")) == 0
    table = _table(out / "out-0" / "results.csv")
    assert [row["method"] for row in table] == [
        "IG black",
        "IG uniform",
        "IG training data",
        "EG training data",
        "PGIG black",
        "random",
    ]
    assert table == _table(tmp_path / "results.csv")


def test_a_rank_failing_in_the_command_line_stops_the_other(ranks):
    out = ranks[0]
    status_1, error_1 = (out / "failing-1").read_text().split("\n", 1)
    assert status_1 == "2" and "--model" in error_1, error_1
    status_0, error_0 = (out / "failing-0").read_text().split("\n", 1)
    assert status_0 == "1", error_0
    last = error_0.strip().splitlines()[-1]  # after the progress lines
    assert last.startswith(
        "captum-baselines compare: error: compare_attributions on rank 0: "
        "exchanging each rank's status failed; another rank probably died"
    )
    assert "Traceback" not in error_0
    assert not (out / "failing" / "out-0").exists()


# ---------------------------------------------------------------------------
# In one process


def test_methods_that_take_a_generator_get_one_per_batch():
    model, x = _model(), _inputs()
    seeds = []

    def recording(xs, target, generator):
        seeds.append(generator.initial_seed())
        return torch.randn(xs.shape, generator=generator, dtype=xs.dtype)

    result = compare_attributions(
        model,
        x,
        TARGETS,
        {"recording": recording},
        curves=("top_k",),
        batch_size=4,
        show_progress=False,
    )
    assert result is not None and result.seed is not None
    expected = [batch_generator(result.seed, "method recording", b) for b in range(3)]
    assert seeds == [g.initial_seed() for g in expected]
    assert len(set(seeds)) == 3
    draws = [torch.randn(n, 3, 8, 8, generator=g, dtype=x.dtype)
             for n, g in zip((4, 4, 3), expected)]  # fmt: skip
    assert torch.equal(result.methods["recording"].attributions, torch.cat(draws))
    # the random control has a stream of its own
    control = batch_generator(result.seed, "method random", 0)
    assert control.initial_seed() not in seeds


def test_distributed_needs_a_process_group():
    with pytest.raises(ValueError, match="`distributed=True` needs"):
        compare_attributions(
            _model(), _inputs(), TARGETS, {}, batch_size=3, distributed=True
        )


def test_digest_tells_equal_content_from_different():
    model = _model()
    assert digest(model) == digest(_model())
    assert digest(_inputs()) == digest(_inputs().clone())
    assert digest(_inputs()) != digest(_inputs().float())
    assert digest([1, (2, 3)]) != digest([1, (2, 4)])
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1
    assert digest(model) != digest(_model())


def test_without_torchrun_no_process_group_is_joined(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group_from_environment(5) as shared:
        assert not shared and not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        with process_group_from_environment(5):
            pass
    with pytest.raises(ValueError, match="`timeout`"):
        with process_group_from_environment(0):
            pass
