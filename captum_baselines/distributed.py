"""Working under ``torch.distributed``: joining ``torchrun``'s process group, and
collectives that end in a clear error instead of a hang.

``fit_patterns`` and ``compare_attributions`` share the work of several processes
(*ranks*) launched by ``torchrun``.  What they need from the process group is
here, once:

- :func:`use_distributed`: whether a call shares its work (a process group with
  more than one rank is initialized), or whether the caller insists.
- :func:`agree_across_ranks`: every rank tells every other whether it failed and
  what it was given (e.g. :func:`digest` of its inputs), so that a rank that
  raised makes the others raise :class:`DistributedError` naming it, and ranks
  given different arguments stop with a ``ValueError`` before they combine
  results that do not belong together.
- :func:`collective`: a collective whose failure (a peer that died, a timeout)
  becomes a :class:`DistributedError` that says so.
- :func:`process_group_from_environment`: the process group that ``torchrun``
  describes in ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT``, joined with a timeout and destroyed on exit; the command line
  runs inside it.

A rank that stops outright (killed, out of memory) is noticed by the others at
their next collective: gloo reports the closed connection at once; a rank that is
alive but never reaches the collective ends the wait at the process group's
``timeout``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

#: The environment variables ``torchrun`` sets for every process it starts.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedError(RuntimeError):
    """Another rank failed or is unreachable, so this rank stops too."""


def use_distributed(distributed: bool | None = None) -> bool:
    """Whether a call shares its work across ranks.

    Args:
        distributed: ``None``: when a ``torch.distributed`` process group with
            more than one rank is initialized; ``False``: never (this process
            works alone); ``True``: always, which needs a process group.
    """
    initialized = dist.is_available() and dist.is_initialized()
    if distributed is None:
        return initialized and dist.get_world_size() > 1
    if not isinstance(distributed, bool):
        raise TypeError(
            f"`distributed` must be None or a bool, got {type(distributed).__name__}"
        )
    if distributed and not initialized:
        raise ValueError(
            "`distributed=True` needs an initialized torch.distributed process "
            "group (torch.distributed.init_process_group, e.g. under torchrun)"
        )
    return distributed


def rank() -> int:
    """This process's rank; 0 without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def world_size() -> int:
    """The number of ranks; 1 without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """Whether this process is rank 0 (or works alone): the one that reports and
    writes files."""
    return rank() == 0


def collective(who: str, what: str, call: Callable[[], Any]) -> Any:
    """Runs ``call()``, a collective, turning its failure into a
    :class:`DistributedError` that names ``who`` called it and ``what`` it did."""
    try:
        return call()
    except Exception as error:
        raise DistributedError(
            f"{who} on rank {rank()}: {what} failed; another rank probably died "
            f"or is not calling {who} (a rank that is alive but absent ends the "
            f"wait at the process group's timeout): {error}"
        ) from error


def collective_device() -> torch.device:
    """Where tensors of a collective must live: the current GPU under nccl."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree_across_ranks(
    who: str,
    error: BaseException | None,
    facts: Mapping[str, Any] | None = None,
) -> None:
    """Every rank learns whether every rank succeeded, and on what.

    Call it on every rank with the error the rank caught (or ``None``) and the
    ``facts`` that must be equal on every rank (picklable, compared with ``==``).
    Raises the rank's own ``error`` where it failed, on the other ranks a
    :class:`DistributedError` naming the ranks that failed, and, when every rank
    succeeded, a ``ValueError`` naming the facts in which the ranks differ.
    """
    mine = (error is not None, dict(facts or {}))
    everyone: list[Any] = [None] * dist.get_world_size()
    collective(
        who,
        "exchanging each rank's status",
        lambda: dist.all_gather_object(everyone, mine),
    )
    failed = [r for r, (failure, _) in enumerate(everyone) if failure]
    if error is not None:
        raise error
    if failed:
        raise DistributedError(
            f"{who} failed on rank(s) {failed} (see their error); rank {rank()} "
            "stops too"
        )
    differ = [
        name
        for name in mine[1]
        if any(o[1].get(name) != mine[1][name] for o in everyone)
    ]
    if differ:
        raise ValueError(
            f"{who}: the ranks were given different {', '.join(differ)}; every "
            "rank must be called with the same arguments"
        )


def gather_to_main(who: str, what: str, value: Any) -> list[Any] | None:
    """``value`` of every rank, in rank order, on rank 0 (``None`` elsewhere).

    Tensors travel pickled (gloo's and nccl's object collectives); move them to
    the CPU first, since a CUDA tensor would be unpickled on the sender's GPU.
    """
    main = is_main_process()
    gathered: list[Any] | None = [None] * dist.get_world_size() if main else None
    collective(who, what, lambda: dist.gather_object(value, gathered, dst=0))
    return gathered


def digest(value: Any) -> str:
    """A short hash of ``value``'s content, equal on two ranks exactly when the
    values are: tensors by dtype, shape and bytes (wherever they live), modules
    by their state (parameters and buffers), mappings and sequences item by item,
    anything else by ``repr``."""
    hasher = hashlib.blake2b(digest_size=16)
    _update(hasher, value)
    return hasher.hexdigest()


def _update(hasher: Any, value: Any) -> None:
    if isinstance(value, Tensor):
        t = value.detach()
        hasher.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
        flat = t.resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
        if flat.numel():
            hasher.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, nn.Module):
        _update(hasher, value.state_dict())
    elif isinstance(value, Mapping):
        hasher.update(f"mapping {len(value)};".encode())
        for key, item in value.items():
            _update(hasher, key)
            _update(hasher, item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _update(hasher, item)
    else:
        hasher.update(f"{repr(value)};".encode())


def torchrun_environment() -> dict[str, str] | None:
    """The variables ``torchrun`` sets, when this process was started by it with
    more than one rank (``WORLD_SIZE`` > 1); else ``None``."""
    if "WORLD_SIZE" not in os.environ:
        return None
    found = {name: os.environ.get(name) for name in TORCHRUN_VARIABLES}
    missing = [name for name, value in found.items() if value is None]
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        value = found[name]
        if value is not None and not value.isdigit():
            raise ValueError(
                f"the environment variable {name} must be a non-negative integer, "
                f"got {value!r}"
            )
    if int(os.environ["WORLD_SIZE"]) <= 1:
        return None
    if missing:
        raise ValueError(
            f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {', '.join(missing)} "
            "is not set: launch with torchrun, which sets them all"
        )
    return {name: str(value) for name, value in found.items()}


@contextlib.contextmanager
def process_group_from_environment(
    timeout: float = 1800.0, device: torch.device | str = "cpu"
) -> Iterator[bool]:
    """Joins the process group ``torchrun`` describes in the environment, for
    the duration of the ``with`` block, and destroys it on exit.

    Without ``torchrun`` (no ``WORLD_SIZE`` > 1), or with a process group
    already initialized by the caller, it does nothing.

    Args:
        timeout: Seconds a rank waits for the others in a collective before it
            raises; longer than the ranks' work may differ between two meetings.
        device: Where the ranks compute: gloo for the CPU; nccl for CUDA, each
            rank on the GPU numbered by its ``LOCAL_RANK``.

    Yields:
        Whether work is shared across ranks inside the block.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"`timeout` must be a number, got {type(timeout).__name__}")
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(
            f"`timeout` must be a positive number of seconds, got {timeout}"
        )
    environment = torchrun_environment()
    if environment is None or dist.is_initialized():
        yield use_distributed()
        return
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    device = torch.device(device)
    backend = "gloo"
    if device.type == "cuda":
        backend = "nccl"
        torch.cuda.set_device(int(environment["LOCAL_RANK"]))
    dist.init_process_group(
        backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout)
    )
    try:
        yield True
    finally:
        dist.destroy_process_group()


__all__ = [
    "TORCHRUN_VARIABLES",
    "DistributedError",
    "agree_across_ranks",
    "collective",
    "collective_device",
    "digest",
    "gather_to_main",
    "is_main_process",
    "process_group_from_environment",
    "rank",
    "torchrun_environment",
    "use_distributed",
]
