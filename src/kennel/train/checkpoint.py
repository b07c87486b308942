"""A training run's checkpoint: written atomically by rank 0 after every epoch, read back
(by rank 0, its bytes sent to every rank) when a killed run resumes. It holds the model,
optimiser, schedule, history, best model and every rank's random state, so a resumed run with
the same number of processes goes on exactly as if it had never stopped. Loaded with
``weights_only=True``: tensors and plain values, never arbitrary objects."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kennel.train.parallel import Parallel

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@dataclass
class Randomness:
    """Where a run's randomness comes from: ``order`` draws each epoch's order (the same on
    every rank), ``shake`` the augmentation (``order`` itself in a single process, as before
    data-parallel training existed), torch's global generators the dropout."""

    order: torch.Generator
    shake: torch.Generator
    par: Parallel

    def ranks(self) -> list[dict[str, torch.Tensor]]:
        """Every rank's own generator states (what a checkpoint needs from each)."""
        if not self.par.distributed:
            return []
        mine = {"shake": self.shake.get_state(), "torch": torch.get_rng_state()}
        if self.par.device.type == "cuda":
            mine["cuda"] = torch.cuda.get_rng_state(self.par.device)
        gathered = {k: self.par.gather_bytes(v.numpy().tobytes()) for k, v in mine.items()}
        return [{k: _state(v[r]) for k, v in gathered.items()} for r in range(self.par.world)]

    def restore(self, ranks: list[dict[str, torch.Tensor]]) -> None:
        if len(ranks) != self.par.world:  # another number of processes: not exact any more
            return
        state = ranks[self.par.rank]
        self.shake.set_state(state["shake"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and self.par.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.par.device)


def load_checkpoint(path: Path, par: Parallel) -> dict[str, Any] | None:
    """The last checkpoint, as rank 0 reads it (every rank gets its bytes), or None."""
    data = par.broadcast_bytes(path.read_bytes() if par.leader and path.is_file() else None)
    if not data:
        return None
    saved: dict[str, Any] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return saved


def _state(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
