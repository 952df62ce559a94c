"""``fit_patterns`` under ``torch.distributed``: two CPU processes on gloo.

Two fresh Python processes (``_worker`` below), started once for the module,
join a gloo process group through a file store and run ``fit_patterns`` on their
shards in turn: from a tensor, from a ``DistributedSampler`` loader, with rank 1
raising, and last with rank 1 dying.  They write what they got (patterns or the
error message) to files that the tests compare with a single-process fit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from captum_baselines.attr.patterns import fit_patterns
from tests.helpers import randomize_batchnorms, run_ranks, small_cnn

WORLD = 2
TIMEOUT_S = 10  # the process group's: the longest a rank may wait for the other

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)


def _model() -> torch.nn.Module:
    return randomize_batchnorms(small_cnn(seed=0).double())


def _data() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(24, 3, 8, 8, generator=generator, dtype=torch.float64)


def _worker(rank: int, store: str, out: str) -> None:
    """One rank: fits in every mode in turn and writes what it got."""
    import datetime
    import warnings

    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    results = Path(out)
    try:
        data = _data()
        patterns = fit_patterns(_model(), data, show_progress=False, batch_size=5)
        torch.save(dict(patterns), results / f"tensor-{rank}.pt")
        dataset = TensorDataset(data, torch.zeros(len(data)))
        sampler = DistributedSampler(dataset, WORLD, rank, shuffle=False)
        loader = DataLoader(dataset, batch_size=4, sampler=sampler)
        patterns = fit_patterns(_model(), loader, show_progress=False)
        torch.save(dict(patterns), results / f"loader-{rank}.pt")
        odd = TensorDataset(data[:23])
        sampler = DistributedSampler(odd, WORLD, rank, shuffle=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loader = DataLoader(odd, batch_size=4, sampler=sampler)
            fit_patterns(_model(), loader, show_progress=False)
        messages = "\n".join(str(w.message) for w in caught)
        (results / f"warnings-{rank}.txt").write_text(messages)
        _record_error(rank, results / f"raises-{rank}.txt", _raise_on_rank_one)
        _record_error(rank, results / f"crash-{rank}.txt", _die_on_rank_one)
    finally:
        dist.destroy_process_group()


def _raise_on_rank_one(rank: int) -> None:
    model = _model()
    if rank == 1:
        model[4].register_forward_hook(_raise)
    fit_patterns(model, _data(), show_progress=False, batch_size=5)


def _die_on_rank_one(rank: int) -> None:
    model = _model()
    if rank == 1:
        model[4].register_forward_hook(lambda *args: os._exit(3))
    fit_patterns(model, _data(), show_progress=False, batch_size=5)


def _raise(*args: object) -> None:
    raise RuntimeError("rank one fails on purpose")


def _record_error(rank: int, path: Path, run) -> None:  # type: ignore[no-untyped-def]
    try:
        run(rank)
        path.write_text("no error")
    except Exception as error:
        path.write_text(f"{type(error).__name__}: {error}")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Runs both ranks once; returns their results folder, exit codes, seconds."""
    out = tmp_path_factory.mktemp("distributed")
    codes, errors, seconds = run_ranks(
        "tests.test_patterns_distributed", [str(out / "store"), str(out)], WORLD, 300
    )
    return out, codes, errors, seconds


def test_distributed_patterns_equal_single_process_ones(ranks):
    out, codes, errors, _ = ranks
    assert codes[0] == 0, errors[0]
    expected = fit_patterns(_model(), _data(), show_progress=False, batch_size=5)
    for mode in ("tensor", "loader"):
        fitted = [torch.load(out / f"{mode}-{r}.pt") for r in range(WORLD)]
        assert set(fitted[0]) == set(expected)
        for name, pattern in expected.items():
            assert torch.equal(fitted[0][name], fitted[1][name]), (mode, name)
            torch.testing.assert_close(fitted[0][name], pattern, rtol=0, atol=1e-9)


def test_a_padding_distributed_sampler_is_warned_about(ranks):
    warned = (ranks[0] / "warnings-0.txt").read_text()
    assert "DistributedSampler pads 23 examples" in warned


def test_a_failing_rank_makes_every_rank_raise(ranks):
    out = ranks[0]
    # It re-raises its own error; the other says which rank failed.
    assert (out / "raises-1.txt").read_text() == (
        "RuntimeError: rank one fails on purpose"
    )
    assert (
        (out / "raises-0.txt")
        .read_text()
        .startswith("DistributedError: fit_patterns failed on rank(s) [1]")
    )


def test_a_dead_rank_ends_the_other_with_a_clear_error(ranks):
    out, codes, errors, seconds = ranks
    assert codes == [0, 3], errors  # rank 1 died inside its forward pass
    message = (out / "crash-0.txt").read_text()
    assert message.startswith("DistributedError: fit_patterns on rank 0: exchanging")
    assert "another rank probably died" in message
    assert seconds < 120 + TIMEOUT_S
