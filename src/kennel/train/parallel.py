"""Where training runs: the device (``train.device``: ``auto`` is CUDA when present, else the
CPU) and, for data-parallel training, who this process is among its peers.

Data-parallel training is launched by torchrun: every process ("rank") runs the same
``kennel train`` command and learns from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``) who it is; the process
group uses NCCL on GPUs and gloo on CPUs. Every rank trains its share of each batch and DDP
averages the gradients; rank 0 alone records, checkpoints, evaluates, packages and registers.
The few collectives the trainer and the build need are here, over plain bytes (never pickle).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from kennel.errors import ConfigError, TrainingError
from kennel.ingest.lifeline import die_with_parent

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def choose_device(setting: str, local_rank: int = 0) -> torch.device:
    """``auto``: the CUDA device of this local rank when CUDA is present, else the CPU;
    ``cpu``; ``cuda`` (this local rank's GPU) or ``cuda:N``."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"train.device is {setting!r} but this machine has no CUDA device")
    device = torch.device(setting if ":" in setting else f"cuda:{local_rank}")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"train.device {setting!r}: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return device


def check_ranks(nproc: int, device: torch.device) -> None:
    """One rank per CPU core or per GPU of this machine at most: more only oversubscribe it
    (64 ranks on 2 cores ran for minutes without a word)."""
    if device.type == "cuda":
        have, what = torch.cuda.device_count(), "GPU(s)"
    else:
        have, what = os.cpu_count() or 1, "CPU cores"
    if nproc > have:
        raise ConfigError(
            f"--nproc {nproc}: this machine has {have} {what}; run at most one rank on each "
            "(several machines: torchrun, see docs/operations.md)"
        )


@dataclass(frozen=True)
class Parallel:
    """This process's place in a training run (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def describe(self) -> str:
        kind = self.device.type
        if not self.distributed:
            return f"on {kind}"
        return f"on {self.world} {kind} processes ({dist.get_backend()}, torchrun)"

    def threads(self, configured: int) -> int:
        """Threads per process: ``train.threads``, else this machine's cores shared evenly."""
        return configured or max(1, (os.cpu_count() or 1) // self.local_world)

    # -- collectives (no-ops in a single process) -------------------------------------------

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sync_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (batch-norm statistics, which each rank updates on its own share)
        on every rank."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def sum(self, *values: float) -> list[float]:
        """Element-wise sums over every rank."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._wire)
        dist.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank (others pass None)."""
        if not self.distributed:
            return data or b""
        size = torch.tensor([len(data or b"")], dtype=torch.int64, device=self._wire)
        dist.broadcast(size, 0)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=self._wire)
        if self.leader and data:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, 0)
        return bytes(buffer.cpu().numpy().tobytes())

    def broadcast_json(self, value: Any = None) -> Any:
        """Rank 0's JSON-able ``value`` on every rank."""
        data = json.dumps(value).encode() if self.leader else None
        return json.loads(self.broadcast_bytes(data))

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order, on every rank."""
        if not self.distributed:
            return [data]
        size = torch.tensor([len(data)], dtype=torch.int64, device=self._wire)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = max(int(s.item()) for s in sizes)
        mine = torch.zeros(longest, dtype=torch.uint8, device=self._wire)
        if data:
            mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        parts = [torch.zeros_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)
        return [
            bytes(p[: int(s.item())].cpu().numpy().tobytes())
            for p, s in zip(parts, sizes, strict=True)
        ]

    @property
    def _wire(self) -> torch.device:
        """Where collective tensors live: NCCL moves only GPU tensors."""
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device_setting: str) -> Parallel:
    """This process's Parallel: from torchrun's environment (joining the process group, and
    dying with the torchrun that started it), else a single process on the chosen device."""
    if not launched_by_torchrun():
        return Parallel(device=choose_device(device_setting))
    try:
        rank, world, local_rank, local_world = (int(os.environ[k]) for k in _ENV)
    except (KeyError, ValueError) as exc:
        raise TrainingError(f"torchrun's environment is incomplete: {exc}") from exc
    # torchrun starts its workers in sessions of their own: without this, kill -9 of the
    # launcher would leave them training (and registering) on their own
    die_with_parent(os.getppid())
    device = choose_device(device_setting, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return Parallel(rank, world, local_rank, local_world, device)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def joined(device_setting: str) -> Iterator[Parallel]:
    """``join`` for the length of a block; the process group is left on the way out."""
    parallel = join(device_setting)
    try:
        yield parallel
    finally:
        leave()
