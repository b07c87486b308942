"""The training loop: AdamW, one-cycle or cosine schedule, label smoothing, early stopping on
the validation split, a checkpoint after every epoch (atomic), and exact resumption.

It runs on ``train.device`` (CUDA when present) and, launched by torchrun, data-parallel
(``kennel.train.parallel``): every rank draws the same order of the epoch from the same seed,
trains its share of each batch (rank r takes every world-th image from r), DDP averages the
gradients, so a step is the single-process step on the whole batch; validation is split the
same way and summed. Each rank augments with its own generator; the checkpoint (written by rank
0) keeps every rank's random state, so a resumed run with the same number of processes goes on
exactly as if it had never stopped.

For EfficientNet-Lite with ``frozen_blocks > 0`` the frozen stem and blocks run once per image
(plus a mirrored view) and their outputs are cached in memory (``kennel.train.features``);
epochs then train only the remaining blocks and the head on those features, which is what makes
fine-tuning fast on a CPU. With ``freeze_backbone`` everything but the classifier is frozen:
ONNX Runtime computes each image's pooled embedding once (``kennel.train.probe``) and the linear
classifier is fitted on them in one step (a cross-validated logistic regression), not by epochs.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kennel.config import TrainConfig
from kennel.errors import ConfigError, TrainingError
from kennel.progress import Event, Progress, silent
from kennel.train import features, probe
from kennel.train.augment import LETTERBOX_SHARE, Prefetcher, augment, to_input
from kennel.train.checkpoint import (
    CHECKPOINT,
    Randomness,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from kennel.train.data import ImageSet, balanced_weights, column
from kennel.train.embeddings import predict as predict_onnx
from kennel.train.features import EVAL_BATCH, Tail
from kennel.train.models import EfficientNetLite, build
from kennel.train.parallel import Parallel, choose_device
from kennel.train.pretrained import load_imagenet
from kennel.train.results import EpochStats, FitResult

__all__ = ["CHECKPOINT", "EpochStats", "FitResult", "Trainer", "make_model", "predict"]


def make_model(
    cfg: TrainConfig, num_classes: int, init_state: dict[str, torch.Tensor] | None = None
) -> nn.Module:
    model = build(cfg.arch, num_classes, dropout=cfg.dropout)
    if (cfg.frozen_blocks or cfg.freeze_backbone) and not isinstance(model, EfficientNetLite):
        raise ConfigError(
            f"train.frozen_blocks and train.freeze_backbone apply to efficientnet_lite* only, "
            f"not {cfg.arch} (from --arch, --init-from or the search space)"
        )
    if init_state is not None:
        try:
            model.load_state_dict(init_state)
        except RuntimeError as exc:  # another architecture or number of classes
            why = str(exc).strip().splitlines()[-1].strip()
            raise TrainingError(f"--init-from: its weights do not fit this model ({why})") from None
    elif isinstance(model, EfficientNetLite) and cfg.pretrained:
        load_imagenet(model)
    if cfg.frozen_blocks or cfg.freeze_backbone:
        assert isinstance(model, EfficientNetLite)
        if cfg.freeze_backbone:
            model.freeze_backbone()
        else:
            model.freeze(cfg.frozen_blocks)
    model.flip_average = cfg.tta_flip  # type: ignore[assignment]
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def _set_train(model: nn.Module, cfg: TrainConfig) -> None:
    model.train()
    if isinstance(model, EfficientNetLite) and cfg.freeze_backbone:
        model.freeze_backbone()  # keeps frozen BN statistics fixed
    elif isinstance(model, EfficientNetLite) and cfg.frozen_blocks:
        model.freeze(cfg.frozen_blocks)


@torch.no_grad()
def predict(
    model: nn.Module, images: np.ndarray, batch: int = EVAL_BATCH
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings for uint8 NHWC images, in eval mode (EfficientNet-Lite through
    ONNX Runtime, several times faster on a CPU; within packaging's parity tolerance)."""
    model.eval()
    if isinstance(model, EfficientNetLite):
        return predict_onnx(model, images)
    logits, embeddings = [], []
    for lo in range(0, len(images), batch):
        out, emb = model(to_input(torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch]))))
        logits.append(out.numpy())
        embeddings.append(emb.numpy())
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(logits), np.concatenate(embeddings)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: ImageSet,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        run_dir: Path,
        *,
        init_state: dict[str, torch.Tensor] | None = None,
        on_epoch: Callable[[EpochStats], None] | None = None,
        progress: Progress = silent,
        parallel: Parallel | None = None,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.train_idx = train_idx
        self.val_idx = val_idx
        self.run_dir = run_dir
        self.init_state = init_state
        self.on_epoch = on_epoch
        self.progress = progress
        self.parallel = parallel  # None: this process alone, on train.device

    def fit(self, *, resume: bool = False) -> FitResult:
        cfg = self.cfg
        par = self.parallel or Parallel(device=choose_device(cfg.device))
        device = par.device
        torch.set_num_threads(par.threads(cfg.threads))
        torch.manual_seed(cfg.seed + par.rank)
        if device.type == "cuda":
            torch.cuda.manual_seed(cfg.seed + par.rank)
        order = torch.Generator().manual_seed(cfg.seed)
        shake = order
        if par.distributed:
            shake = torch.Generator().manual_seed(cfg.seed + 7919 * (par.rank + 1))
        rng = Randomness(order, shake, par)
        began = time.perf_counter()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        model = make_model(cfg, len(self.data.classes), self.init_state).to(device)
        cached = isinstance(model, EfficientNetLite) and (
            cfg.frozen_blocks > 0 or cfg.freeze_backbone
        )
        train_x, train_y, val_x, val_y = self._inputs(model, cached, device)
        if isinstance(model, EfficientNetLite) and cfg.freeze_backbone:
            return self._fit_probe(model, train_x, train_y, val_x, val_y, began)
        trainable: nn.Module = model
        if isinstance(model, EfficientNetLite) and cached:
            trainable = Tail(model, cfg.frozen_blocks)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = max(1, math.ceil(len(train_y) / cfg.batch_size))
        scheduler: torch.optim.lr_scheduler.LRScheduler
        # One-cycle needs a few steps per phase; very short runs fall back to cosine decay.
        if cfg.schedule == "onecycle" and cfg.epochs * steps >= 8:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.25
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * steps)
        history: list[EpochStats] = []
        best = {"epoch": 0, "accuracy": -1.0, "loss": math.inf}
        best_state = copy.deepcopy(model.state_dict())
        bad_epochs, start = 0, 1
        checkpoint = self.run_dir / CHECKPOINT
        saved = load_checkpoint(checkpoint, par) if resume else None
        if saved is not None:  # each rank goes on where it stopped
            history, best, best_state, bad_epochs, start = restore(
                saved, checkpoint, model, optimizer, scheduler, order, rng
            )
        # DDP averages gradients over the ranks in backward (and starts every rank from rank
        # 0's weights); a single process steps the module itself
        stepped: nn.Module = trainable
        if par.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device] if device.type == "cuda" else None
            stepped = DistributedDataParallel(trainable, device_ids=ids)
        stopped = bad_epochs >= cfg.patience
        weights = None
        if cfg.balance_by:  # every value of the column gets an equal share of each epoch
            groups = column(self.data.rows, self.train_idx, cfg.balance_by)
            if not any(groups):
                raise TrainingError(
                    f"train.balance_by: no training image has a {cfg.balance_by!r} column"
                )
            tiled = np.tile(balanced_weights(groups), len(train_y) // len(self.train_idx))
            weights = torch.from_numpy(tiled)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        for epoch in range(start, cfg.epochs + 1):
            if stopped:
                break
            t0 = time.perf_counter()
            _set_train(model, cfg)
            if weights is None:
                drawn = torch.randperm(len(train_y), generator=order)
            else:
                drawn = torch.multinomial(weights, len(train_y), True, generator=order)
            whole = [drawn[i * cfg.batch_size : (i + 1) * cfg.batch_size] for i in range(steps)]
            # this rank's share of each batch; a last batch too small to share is left out
            shares = [(b[par.rank :: par.world], len(b)) for b in whole if len(b) >= par.world]
            batches = [b for b, _n in shares]
            if not cached:  # ascending reads from the memmap; labels follow the same order
                batches = [b[np.argsort(train_x[b.numpy()], kind="stable")] for b in batches]

                def make(i: int, batches: list[torch.Tensor] = batches) -> torch.Tensor:
                    rows = train_x[batches[i].numpy()]
                    return augment(
                        torch.from_numpy(self.data.images[rows]),
                        cfg.augment,
                        shake,
                        letterbox=LETTERBOX_SHARE if "letterbox" in cfg.frame else 0.0,
                    )

                inputs: Any = Prefetcher(make, len(batches))
            else:
                inputs = (train_x[b].float() for b in batches)
            total, count = 0.0, 0
            # closed however the epoch ends: Ctrl-C or SIGTERM mid-epoch stops the prefetch
            # thread before the interpreter exits
            feed: Any = iter(inputs)  # a generator either way
            with contextlib.closing(feed):
                for idx, n, x in zip(batches, (n for _b, n in shares), feed, strict=True):
                    y = train_y[idx].to(device, non_blocking=True)
                    out = stepped(x.to(device, non_blocking=True))
                    logits = out[0] if isinstance(out, tuple) else out
                    loss = loss_fn(logits, y)
                    optimizer.zero_grad(set_to_none=True)
                    # DDP averages over ranks: weighted so the step is the whole batch's mean
                    (loss * (len(y) * par.world / n) if par.distributed else loss).backward()
                    optimizer.step()
                    scheduler.step()
                    total += loss.item() * len(y)
                    count += len(y)
            total, seen = par.sum(total, count)
            val_loss, val_acc = self._validate(model, trainable, val_x, val_y, cached, par)
            seconds = time.perf_counter() - t0
            stats = EpochStats(
                epoch=epoch,
                train_loss=total / max(1, seen),
                val_loss=val_loss,
                val_accuracy=val_acc,
                seconds=seconds,
                images_per_s=seen / seconds,
                lr=float(scheduler.get_last_lr()[0]),
            )
            history.append(stats)
            if val_acc > best["accuracy"] or (
                val_acc == best["accuracy"] and val_loss < best["loss"]
            ):
                best = {"epoch": epoch, "accuracy": val_acc, "loss": val_loss}
                best_state = copy.deepcopy(model.state_dict())
                bad_epochs = 0
            else:
                bad_epochs += 1
            stopped = bad_epochs >= cfg.patience
            ranks = rng.ranks()
            if par.leader:
                save_checkpoint(
                    {
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": order.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "ranks": ranks,
                        "history": [asdict(h) for h in history],
                        "best": best,
                        "best_model": best_state,
                        "bad_epochs": bad_epochs,
                    },
                    checkpoint,
                )
            if self.on_epoch is not None:
                self.on_epoch(stats)
        model.load_state_dict(best_state)
        model.to("cpu").eval()  # evaluation, export and packaging run on the CPU
        return FitResult(
            history=tuple(history),
            best_epoch=int(best["epoch"]),
            best_val_accuracy=float(best["accuracy"]),
            best_val_loss=float(best["loss"]),
            epochs_run=len(history),
            stopped_early=stopped and len(history) < cfg.epochs,
            seconds=time.perf_counter() - began,
            model=model,
        )

    def _fit_probe(
        self,
        model: EfficientNetLite,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        val_x: torch.Tensor,
        val_y: torch.Tensor,
        began: float,
    ) -> FitResult:
        """A linear probe is one convex fit (``probe.fit``), recorded as one epoch whose ``lr``
        is the chosen C; no checkpoint (a resumed probe run is fitted again, in seconds)."""
        fitted = probe.fit(model.cpu(), train_x, train_y, val_x, val_y)
        how = (
            "too few images to cross-validate"
            if fitted.cv_accuracy is None
            else f"{100 * fitted.cv_accuracy:.2f} % in {probe.FOLDS}-fold cross-validation"
        )
        self.progress(Event("train", f"linear probe: C {fitted.c:g} ({how})"))
        seconds = time.perf_counter() - began
        stats = EpochStats(
            epoch=1,
            train_loss=fitted.train_loss,
            val_loss=fitted.val_loss,
            val_accuracy=fitted.val_accuracy,
            seconds=seconds,
            images_per_s=len(train_y) / max(seconds, 1e-9),
            lr=fitted.c,
        )
        if self.on_epoch is not None:
            self.on_epoch(stats)
        model.eval()
        return FitResult(
            history=(stats,),
            best_epoch=1,
            best_val_accuracy=fitted.val_accuracy,
            best_val_loss=fitted.val_loss,
            epochs_run=1,
            stopped_early=False,
            seconds=seconds,
            model=model,
        )

    def _inputs(
        self, model: nn.Module, cached: bool, device: torch.device
    ) -> tuple[Any, torch.Tensor, Any, torch.Tensor]:
        if not cached:
            labels = torch.from_numpy(self.data.labels)
            return self.train_idx, labels[self.train_idx], self.val_idx, labels[self.val_idx]
        assert isinstance(model, EfficientNetLite)
        if self.cfg.freeze_backbone:
            return probe.inputs(
                model, self.cfg, self.data, self.train_idx, self.val_idx, self.progress
            )
        return features.encode(
            model,
            self.data,
            self.train_idx,
            self.val_idx,
            frozen_blocks=self.cfg.frozen_blocks,
            mirrored=self.cfg.augment > 0,
            letterbox="letterbox" in self.cfg.frame,
            device=device,
            progress=self.progress,
        )

    @torch.no_grad()
    def _validate(
        self,
        model: nn.Module,
        trainable: nn.Module,
        val_x: Any,
        val_y: torch.Tensor,
        cached: bool,
        par: Parallel,
    ) -> tuple[float, float]:
        """Loss and accuracy on the validation split, each rank scoring every world-th image
        with rank 0's weights and statistics."""
        if len(val_y) == 0:
            return 0.0, 0.0
        par.sync_buffers(model)  # batch-norm statistics drift apart per rank in training
        trainable.eval()
        mine_x, mine_y = val_x[par.rank :: par.world], val_y[par.rank :: par.world]
        losses, correct = 0.0, 0
        for lo in range(0, len(mine_y), EVAL_BATCH):
            if cached:
                x = mine_x[lo : lo + EVAL_BATCH].float()
            else:
                rows = mine_x[lo : lo + EVAL_BATCH]
                x = to_input(torch.from_numpy(np.ascontiguousarray(self.data.images[rows])))
            out = trainable(x.to(par.device))
            logits = out[0] if isinstance(out, tuple) else out
            y = mine_y[lo : lo + EVAL_BATCH].to(par.device)
            losses += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        losses, correct_all = par.sum(losses, correct)
        return losses / len(val_y), correct_all / len(val_y)
