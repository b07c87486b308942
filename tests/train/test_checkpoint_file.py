"""A training checkpoint carries the hash of its bytes: what is damaged, is no checkpoint or does
not fit the run is an IntegrityError naming the run, never a resumed different model or a
traceback from deep in torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kennel.errors import IntegrityError
from kennel.train.checkpoint import Randomness, load_checkpoint, restore, save_checkpoint
from kennel.train.parallel import Parallel


def _state(model: nn.Module) -> dict[str, object]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4)
    order = torch.Generator().manual_seed(3)
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": order.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": [],
        "best": {"epoch": 1, "accuracy": 0.5, "loss": 0.7},
        "best_model": model.state_dict(),
        "bad_epochs": 0,
        "epoch": 1,
    }


Parts = tuple[
    torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.Generator, Randomness
]


def _parts(model: nn.Module) -> Parts:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4)
    order = torch.Generator()
    return optimizer, scheduler, order, Randomness(order, order, Parallel())


def test_a_checkpoint_round_trips_and_any_changed_byte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run1" / "checkpoint.pt"
    path.parent.mkdir()
    model = nn.Linear(4, 2)
    save_checkpoint(_state(model), path)
    saved = load_checkpoint(path, Parallel())
    assert saved is not None and torch.equal(saved["model"]["weight"], model.weight.detach())
    whole = path.read_bytes()
    for where in (len(whole) // 3, len(whole) - 1):
        damaged = bytearray(whole)
        damaged[where] ^= 0x40
        path.write_bytes(bytes(damaged))
        with pytest.raises(IntegrityError, match=r"run run1's checkpoint is damaged \(its bytes"):
            load_checkpoint(path, Parallel())
    path.write_bytes(whole[: len(whole) // 2])  # cut short
    with pytest.raises(IntegrityError, match="do not match the hash"):
        load_checkpoint(path, Parallel())
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(IntegrityError, match="it is no kennel checkpoint"):
        load_checkpoint(path, Parallel())


def test_a_checkpoint_written_before_the_hash_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "run2" / "checkpoint.pt"
    path.parent.mkdir()
    torch.save(_state(nn.Linear(4, 2)), path)  # torch's own format, as kennel wrote it before
    saved = load_checkpoint(path, Parallel())
    assert saved is not None and saved["epoch"] == 1
    path.write_bytes(path.read_bytes()[:200])  # a damaged one of those: one line, not torch's
    with pytest.raises(IntegrityError, match="run run2's checkpoint is damaged"):
        load_checkpoint(path, Parallel())


def test_a_whole_checkpoint_of_another_model_does_not_fit_the_run(tmp_path: Path) -> None:
    path = tmp_path / "run3" / "checkpoint.pt"
    path.parent.mkdir()
    save_checkpoint(_state(nn.Linear(4, 2)), path)
    saved = load_checkpoint(path, Parallel())
    assert saved is not None
    other = nn.Linear(8, 2)
    optimizer, scheduler, order, rng = _parts(other)
    with pytest.raises(IntegrityError, match=r"run run3's checkpoint is damaged .*does not fit"):
        restore(saved, path, other, optimizer, scheduler, order, rng)
    same = nn.Linear(4, 2)
    optimizer, scheduler, order, rng = _parts(same)
    history, best, _best_state, bad, start = restore(
        saved, path, same, optimizer, scheduler, order, rng
    )
    assert (history, best["epoch"], bad, start) == ([], 1, 0, 2)
    assert torch.equal(same.weight, saved["model"]["weight"])


def test_an_empty_file_another_runs_checkpoint_and_a_bare_tensor_are_refused(
    tmp_path: Path,
) -> None:
    """Each was taken as a checkpoint: an emptied file restarted the run at epoch 1 while
    saying it resumed, another run's (same model, other settings) went on from its epoch,
    and a saved tensor failed deep in the restore, the run then lost for good."""
    mine, theirs = tmp_path / "mine" / "checkpoint.pt", tmp_path / "theirs" / "checkpoint.pt"
    for path in (mine, theirs):
        path.parent.mkdir()
    save_checkpoint(_state(nn.Linear(4, 2)), theirs)
    mine.write_bytes(b"")
    with pytest.raises(IntegrityError, match=r"run mine's checkpoint is damaged \(it is empty\)"):
        load_checkpoint(mine, Parallel())
    mine.write_bytes(theirs.read_bytes())
    with pytest.raises(IntegrityError, match="it is run theirs's checkpoint"):
        load_checkpoint(mine, Parallel())
    torch.save(torch.zeros(3), mine)
    with pytest.raises(IntegrityError, match="it holds a Tensor, no checkpoint"):
        load_checkpoint(mine, Parallel())
    saved = load_checkpoint(theirs, Parallel())
    assert saved is not None and saved["run"] == "theirs"


def test_a_checkpoint_missing_a_part_is_refused_before_any_rank_starts(tmp_path: Path) -> None:
    """Each rank of a data-parallel resume found the missing part in turn (a line each, then
    torchrun's traceback); the launcher's ``verify`` finds it once, as a load does."""
    from kennel.train.checkpoint import verify

    path = tmp_path / "run1" / "checkpoint.pt"
    path.parent.mkdir()
    state = _state(nn.Linear(4, 2))
    del state["history"]
    save_checkpoint(state, path)
    for check in (lambda: verify(path), lambda: load_checkpoint(path, Parallel())):
        with pytest.raises(IntegrityError, match="it does not fit the run: it has no 'history'"):
            check()
    verify(tmp_path / "none" / "checkpoint.pt")  # no file: nothing to check
