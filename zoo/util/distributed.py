"""Running under ``torchrun``: one process per rank, detected from the environment torchrun sets.

A single process (no ``WORLD_SIZE``, or 1) needs none of this and never imports
``torch.distributed``. Under torchrun the process group is created on first use (gloo on CPU,
nccl when CUDA is there); rank 0 pulls and verifies weights while the others wait at a barrier
(:func:`main_first`); data is split into contiguous shards without padding (:func:`shard`:
``DistributedSampler`` pads by repeating images, so an image would be extracted twice); per-rank
results are gathered with :func:`gather_rows` / :func:`gather_objects`; heads train under
DistributedDataParallel (:func:`data_parallel`); only rank 0 writes and prints (:func:`is_main`).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from zoo import config

T = TypeVar("T")


def world_size() -> int:
    return config.world_size()


def active() -> bool:
    """Launched by torchrun with more than one process."""
    return world_size() > 1 and config.launched_by_torchrun()


def _group():
    """The default process group, created on first use."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist


def rank() -> int:
    return _group().get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes files, publishes and prints."""
    return rank() == 0


def barrier() -> None:
    if active():
        _group().barrier()


def main_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 first, then on the others once it is done: rank 0 downloads and verifies
    into the cache, the others then find the verified file there and open no connection. An error
    on rank 0 still releases the others (which then fail on their own, with their own message)."""
    if not active():
        return fn()
    if is_main():
        try:
            return fn()
        finally:
            barrier()
    barrier()
    return fn()


def shard(n: int, r: int | None = None, world: int | None = None) -> range:
    """The contiguous slice of ``range(n)`` rank ``r`` owns: sizes differ by at most one, no padding.
    A single process owns all of it."""
    world = (world_size() if active() else 1) if world is None else world
    r = rank() if r is None else r
    return range(n * r // world, n * (r + 1) // world)


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    _group().all_gather_object(out, obj)
    return out


def gather_rows(tensor):
    """Every rank's rows (any count, same trailing shape), concatenated in rank order, on every rank."""
    if not active():
        return tensor
    import torch

    dist = _group()
    counts = gather_objects(int(tensor.shape[0]))
    width = max(counts)
    padded = torch.zeros((width, *tensor.shape[1:]), dtype=tensor.dtype)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def data_parallel(module):
    """``module`` wrapped in DistributedDataParallel when running under torchrun (gradients are
    averaged across ranks after backward), else ``module`` itself."""
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel

    _group()
    return DistributedDataParallel(module)


def shutdown() -> None:
    if active():
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
