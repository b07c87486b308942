"""A training run's checkpoint: written atomically by rank 0 after every epoch, read back
(by rank 0, its bytes sent to every rank) when a killed run resumes. It holds the model,
optimiser, schedule, history, best model and every rank's random state, so a resumed run with
the same number of processes goes on exactly as if it had never stopped. Loaded with
``weights_only=True``: tensors and plain values, never arbitrary objects.

The file starts with a line naming the sha256 of the rest (written with it, in one atomic
replace): a checkpoint damaged on disk or edited by hand is refused before anything of it is
used (IntegrityError), where it resumed into a different model or failed deep in torch. The
hash finds damage, not a forger who can write the project folder (who could write its
database as well)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kennel.errors import IntegrityError
from kennel.retry import first_line
from kennel.train.parallel import Parallel
from kennel.train.results import EpochStats

CHECKPOINT = "checkpoint.pt"
# what ``restore`` reads of a checkpoint (``ranks``, every rank's random state, is optional)
KEYS = ("model", "optimizer", "scheduler", "rng", "torch_rng", "history", "best",
        "best_model", "bad_epochs", "epoch")  # fmt: skip


MAGIC = b"kennel-checkpoint sha256:"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``state`` as the checkpoint of the run whose folder holds ``path`` (its id kept in it:
    another run's checkpoint copied there is refused)."""
    buffer = io.BytesIO()
    torch.save({**state, "run": path.parent.name}, buffer)
    body = buffer.getbuffer()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        handle.write(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n")
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def discard(run_dir: Path) -> None:
    """Remove a run's checkpoint (and one a kill left half-written) once nothing can resume
    from it: the run completed, failed or was pruned (one a model is tens of MB)."""
    for name in (CHECKPOINT, Path(CHECKPOINT).with_suffix(".tmp").name):
        (run_dir / name).unlink(missing_ok=True)


def _checked(data: bytes, path: Path) -> bytes:
    """The torch bytes of a checkpoint file, after its hash line is checked (a file written
    before checkpoints carried one is taken as it is)."""
    if not data.startswith(MAGIC):
        if data.startswith(b"PK"):  # torch's own format, as kennel wrote it before
            return data
        raise IntegrityError(_damaged(path, "it is no kennel checkpoint"))
    line, _, body = data.partition(b"\n")
    if hashlib.sha256(body).hexdigest().encode() != line[len(MAGIC) :]:
        raise IntegrityError(_damaged(path, "its bytes do not match the hash written with it"))
    return body


def restore(
    saved: dict[str, Any],
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    order: torch.Generator,
    rng: Randomness,
) -> tuple[list[EpochStats], dict[str, Any], dict[str, Any], int, int]:
    """The checkpoint ``saved`` (read from ``path``) put back into the run's model, optimiser,
    schedule and generators; its history, best epoch, best model, epochs without improvement
    and the epoch to start at. What does not fit the run (a key, a shape, a random state) is
    an IntegrityError, not a traceback."""
    try:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        order.set_state(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        rng.restore(saved.get("ranks", []))
        history = [EpochStats(**h) for h in saved["history"]]
        return history, saved["best"], saved["best_model"], saved["bad_epochs"], saved["epoch"] + 1
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        unfit = f"it does not fit the run: {first_line(exc)}"
        raise IntegrityError(_damaged(path, unfit)) from exc


def _damaged(path: Path, why: str) -> str:
    return (
        f"run {path.parent.name}'s checkpoint is damaged ({why}): put its bytes back and "
        "resume, or train without --resume to start a new run"
    )


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
    """The last checkpoint, as rank 0 reads it (every rank gets its bytes), or None when
    there is none. Rank 0 sends b"F" and the file's bytes, so that an empty file, the most
    common way one is cut short, is told apart from no file."""
    found = b"F" + path.read_bytes() if par.leader and path.is_file() else None
    return _parsed(par.broadcast_bytes(found), path)


def verify(path: Path) -> None:
    """Refuse a damaged checkpoint at ``path`` (IntegrityError) before any rank is started to
    resume from it: a launcher says it once, where each rank said it in turn and torchrun added
    its own traceback. No file: nothing to check."""
    if path.is_file():
        _parsed(b"F" + path.read_bytes(), path)


def _parsed(data: bytes | None, path: Path) -> dict[str, Any] | None:
    """The checkpoint in ``data`` (b"F" and the file's bytes; None or b"": no file)."""
    if not data:
        return None
    if len(data) == 1:
        raise IntegrityError(_damaged(path, "it is empty"))
    body = _checked(data[1:], path)
    try:
        saved = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise IntegrityError(_damaged(path, first_line(exc))) from exc
    if not isinstance(saved, dict):
        raise IntegrityError(_damaged(path, f"it holds a {type(saved).__name__}, no checkpoint"))
    if saved.get("run", path.parent.name) != path.parent.name:
        raise IntegrityError(_damaged(path, f"it is run {str(saved['run'])[:32]}'s checkpoint"))
    missing = [key for key in KEYS if key not in saved]
    if missing:  # found here, before any rank is started, not by each rank's restore
        raise IntegrityError(_damaged(path, f"it does not fit the run: it has no {missing[0]!r}"))
    return saved


def _state(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
