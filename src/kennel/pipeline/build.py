"""Turn a dataset version into a tested, registered ONNX model.

search (optional) -> final training run (resumable) -> evaluation on the untouched test split
-> quality gates -> ONNX export + parity -> optional int8 -> bundle -> registry. Every step is a
plain call; the CLI and the pipeline runner are shells over ``Builder.build``.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import safetensors.torch
import torch

from kennel.config import KennelConfig, TrainConfig, revalidate
from kennel.datasets.manifest import Row
from kennel.datasets.versioning import DatasetCatalog, DatasetVersion
from kennel.db import Database
from kennel.errors import PackagingError, TrainingError
from kennel.evaluate import gates as quality_gates
from kennel.evaluate.drift import IMAGE_STATS, reference_statistics
from kennel.evaluate.report import evaluate, render_html
from kennel.package import bundle
from kennel.package.export import to_onnx
from kennel.package.quantize import quantize
from kennel.package.verify import check as parity_check
from kennel.package.verify import normalised
from kennel.portable import softmax
from kennel.progress import Event, Progress, counter, silent
from kennel.registry.entities import ModelVersion
from kennel.registry.store import ModelRegistry
from kennel.storage import ContentStore, sha256_hex
from kennel.train.data import ImageSet, build_image_set, holdout
from kennel.train.tracking import RunTracker
from kennel.train.trainer import EpochStats, Trainer, predict
from kennel.train.tune import search


@dataclass(frozen=True)
class BuildOptions:
    """Per-build overrides of kennel.yaml's ``train`` section."""

    arch: str | None = None
    epochs: int | None = None
    trials: int | None = None
    method: str | None = None
    budget_minutes: float | None = None
    image_size: int | None = None
    init_from: str | None = None
    resume: bool = False
    actor: str = "kennel"
    overrides: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig field


@dataclass(frozen=True)
class BuildResult:
    model: ModelVersion
    run_id: str
    study: str | None
    params: dict[str, Any]
    trials: list[dict[str, Any]]
    evaluation: dict[str, Any]
    gates: dict[str, Any]
    parity: dict[str, Any]
    quantization: dict[str, Any] | None
    history: list[dict[str, Any]]
    seconds: float
    champion: bool = field(default=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.as_dict(),
            "run_id": self.run_id,
            "study": self.study,
            "params": self.params,
            "trials": self.trials,
            "evaluation": {k: v for k, v in self.evaluation.items() if k not in ("curves",)},
            "gates": self.gates,
            "parity": self.parity,
            "quantization": self.quantization,
            "history": self.history,
            "seconds": round(self.seconds, 2),
            "champion": self.champion,
        }


def _predictions_parquet(
    rows: list[Row], idx: np.ndarray, labels: np.ndarray, logits: np.ndarray, classes: list[str]
) -> bytes:
    table = pa.table(
        {
            "uri": [rows[i].uri for i in idx],
            "sha256": [rows[i].sha256 for i in idx],
            "label": [classes[y] for y in labels],
            **{f"logit_{c}": logits[:, k].astype(np.float64) for k, c in enumerate(classes)},
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


class Builder:
    def __init__(
        self,
        *,
        config: KennelConfig,
        db: Database,
        content: ContentStore,
        artifacts_url: str,
        catalog: DatasetCatalog,
        registry: ModelRegistry,
        cache_root: Path,
        runs_root: Path,
        workers: int = 1,
    ) -> None:
        self.config = config
        self.db = db
        self.content = content
        self.artifacts_url = artifacts_url
        self.catalog = catalog
        self.registry = registry
        self.tracker = RunTracker(db)
        self.cache_root = cache_root
        self.runs_root = runs_root
        self.workers = workers

    # -- data ---------------------------------------------------------------------------------
    def _images(
        self, version: DatasetVersion, rows: list[Row], classes: list[str], progress: Progress
    ) -> Callable[[int], ImageSet]:
        cache: dict[int, ImageSet] = {}

        def get(size: int) -> ImageSet:
            if size not in cache:
                cache[size] = build_image_set(
                    rows,
                    classes,
                    version_id=version.id,
                    size=size,
                    content=self.content,
                    artifacts_url=self.artifacts_url,
                    cache_root=self.cache_root,
                    workers=self.workers,
                    progress=counter(progress, f"cache images at {size}px"),
                )
            return cache[size]

        return get

    def classes(self, rows: list[Row]) -> list[str]:
        present = sorted({r.label for r in rows})
        configured = [c for c in self.config.data.labels if c in present]
        return configured + [c for c in present if c not in configured]

    # -- the build ----------------------------------------------------------------------------
    def build(
        self, dataset_ref: str, options: BuildOptions, progress: Progress = silent
    ) -> BuildResult:
        began = time.perf_counter()
        base = self._config(options)  # a bad option fails before any data is read
        version = self.catalog.resolve(dataset_ref)
        rows = self.catalog.rows(version)
        classes = self.classes(rows)
        if len(classes) < 2:
            raise TrainingError(f"{version.ref} has {len(classes)} label(s); need at least 2")
        images = self._images(version, rows, classes, progress)

        def say(message: str, phase: str = "build") -> None:
            progress(Event(phase, message))

        splits = np.array([r.split for r in rows])
        test_idx = np.flatnonzero(splits == "test")
        val_idx = np.flatnonzero(splits == "validation")
        if len(val_idx) == 0:
            val_idx = holdout(rows, base.validation_share, base.seed)
        train_idx = np.setdiff1d(np.flatnonzero(splits == "train"), val_idx)
        if len(train_idx) == 0 or len(test_idx) == 0:
            raise TrainingError(f"{version.ref} needs images in both its train and test splits")

        init_state, init_ref = None, None
        if options.init_from:
            init_state, source_params, init_ref = self._warm_start(options.init_from)
            base = base.model_copy(update={k: source_params[k] for k in ("arch", "image_size")})

        resumed = self._resumable(version, options) if options.resume else None
        trials: list[dict[str, Any]] = []
        study = None
        if resumed is not None:
            run_id = resumed.id
            cfg = TrainConfig.model_validate({**resumed.params, "search": base.search.model_dump()})
            study = resumed.study
            say(f"resuming run {run_id} from its last checkpoint")
        else:
            n_trials = options.trials if options.trials is not None else base.search.trials
            best: dict[str, Any] = {}
            if n_trials > 1 or options.budget_minutes:
                say(f"search: {base.search.method}, up to {n_trials} trials")
                best, trials, study = search(
                    base,
                    images,
                    train_idx,
                    val_idx,
                    tracker=self.tracker,
                    dataset=version.dataset,
                    dataset_version=version.id,
                    run_root=self.runs_root,
                    trials=n_trials,
                    budget_minutes=options.budget_minutes or base.search.budget_minutes,
                    init_state=init_state,
                    storage=base.search.storage,
                    on_trial=lambda t: progress(
                        Event(
                            "tune",
                            f"  trial {t['trial']}: {t['status']} "
                            f"val_accuracy={t['val_accuracy']:.4f} {t['params']}",
                            done=t["trial"] + 1,
                            total=n_trials,
                        )
                    ),
                )
                say(f"best: {best}")
            cfg = base.model_copy(update=best)
            run_id = self.tracker.start(
                kind="final",
                dataset=version.dataset,
                dataset_version=version.id,
                params=cfg.model_dump(exclude={"search"}),
                study=study,
                git_commit=bundle.git_commit(),
                init_from=init_ref,
            )
        say(f"training {cfg.arch} at {cfg.image_size}px, up to {cfg.epochs} epochs (run {run_id})")

        def on_epoch(stats: EpochStats) -> None:
            self.tracker.log_stats(run_id, stats)
            progress(
                Event(
                    "train",
                    f"  epoch {stats.epoch}: train_loss={stats.train_loss:.4f} "
                    f"val_loss={stats.val_loss:.4f} val_accuracy={stats.val_accuracy:.4f} "
                    f"({stats.images_per_s:.0f} img/s)",
                    done=stats.epoch,
                    total=cfg.epochs,
                )
            )

        data = images(cfg.image_size)
        try:
            fit = Trainer(
                cfg,
                data,
                train_idx,
                val_idx,
                self.runs_root / run_id,
                init_state=init_state,
                on_epoch=on_epoch,
                progress=progress,
            ).fit(resume=resumed is not None)
            return self._finish(
                version,
                rows,
                classes,
                data,
                cfg,
                fit,
                run_id,
                study,
                trials,
                train_idx,
                val_idx,
                test_idx,
                options,
                began,
                say,
            )
        except BaseException:
            self.tracker.finish(run_id, "failed")
            raise

    def _config(self, options: BuildOptions) -> TrainConfig:
        update: dict[str, Any] = {}
        for key in ("arch", "epochs", "image_size"):
            if getattr(options, key) is not None:
                update[key] = getattr(options, key)
        if options.method is not None:
            update["search"] = {**self.config.train.search.model_dump(), "method": options.method}
        return revalidate("train", self.config.train, {**options.overrides, **update})

    def _warm_start(self, ref: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
        model = self.registry.resolve(ref)
        if model.run_id is None:
            raise TrainingError(f"{model.ref} has no training run to warm-start from")
        run = self.tracker.get(model.run_id)
        digest = run.metrics.get("weights_sha256")
        if not digest:
            raise TrainingError(f"{model.ref}: its run kept no weights")
        return safetensors.torch.load(self.content.get(digest)), run.params, model.ref

    def _resumable(self, version: DatasetVersion, options: BuildOptions) -> Any:
        running = self.tracker.runs(dataset_version=version.id, kind="final", status="running")
        for run in reversed(running):
            if (self.runs_root / run.id / "checkpoint.pt").is_file():
                return run
        return None

    def _finish(
        self,
        version: DatasetVersion,
        rows: list[Row],
        classes: list[str],
        data: ImageSet,
        cfg: TrainConfig,
        fit: Any,
        run_id: str,
        study: str | None,
        trials: list[dict[str, Any]],
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        test_idx: np.ndarray,
        options: BuildOptions,
        began: float,
        say: Callable[[str], None],
    ) -> BuildResult:
        model = fit.model
        test_logits, test_emb = predict(model, data.images[test_idx])
        val_logits, val_emb = predict(model, data.images[val_idx])
        labels = data.labels[test_idx]
        attrs = [_attrs(rows[i]) for i in test_idx]
        ids = [{"uri": rows[i].uri, "sha256": rows[i].sha256} for i in test_idx]
        evaluation = evaluate(
            labels,
            test_logits,
            classes,
            attrs=attrs,
            ids=ids,
            val_logits=val_logits,
            val_labels=data.labels[val_idx],
        )
        gate = quality_gates.apply(self.config.gates, evaluation)
        say(
            f"test accuracy {evaluation['accuracy']:.4f}; gates "
            f"{'passed' if gate.passed else 'FAILED: ' + '; '.join(gate.reasons)}"
        )

        onnx_model = to_onnx(model, cfg.image_size)
        want = self.config.model.parity_images
        pool = np.concatenate([test_idx, val_idx, train_idx])[:want]
        parity = parity_check(model, onnx_model, data.images[pool])
        say(
            f"parity on {parity.images} images: max |logit diff| {parity.max_abs_logit_diff:.2e}, "
            f"{parity.label_mismatches} label mismatches"
        )
        if not parity.passed:
            raise PackagingError(
                f"ONNX Runtime disagrees with PyTorch: max logit diff "
                f"{parity.max_abs_logit_diff:.2e} (tolerance {parity.tolerance}), "
                f"{parity.label_mismatches} label mismatches"
            )
        quantized = None
        if self.config.model.quantize:
            quantized = quantize(
                onnx_model,
                normalised(data.images[train_idx[:128]]),
                normalised(data.images[test_idx]),
                labels,
            )
            say(f"int8: {quantized.reason}")

        weights = safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()})
        weights_sha = self.content.put(weights)
        predictions_sha = self.content.put(
            _predictions_parquet(rows, test_idx, labels, test_logits, classes)
        )
        report_json = bundle.serialise(
            {
                **evaluation,
                "gates": gate.as_dict(),
                "parity": parity.as_dict(),
                "predictions_sha256": predictions_sha,
            }
        )
        summary = _summary(evaluation)
        reference = _reference(
            rows,
            train_idx,
            np.concatenate([val_logits, test_logits]),
            np.concatenate([val_emb, test_emb]),
            classes,
            evaluation["calibration"]["temperature"],
        )
        html = render_html(
            f"{self.config.model.name}: test report",
            evaluation,
            labels,
            test_logits,
            data.images[test_idx],
            extra={
                "params": cfg.model_dump(exclude={"search"}),
                "gates": gate.as_dict(),
                "parity": parity.as_dict(),
            },
        )

        def make_files(number: int) -> dict[str, bytes]:
            files = {
                bundle.MODEL: onnx_model,
                bundle.REPORT_JSON: report_json,
                bundle.REPORT_HTML: html.encode(),
            }
            if quantized is not None and quantized.model is not None:
                files[bundle.INT8] = quantized.model
            meta = bundle.metadata(
                name=self.config.model.name,
                version=number,
                labels=classes,
                image_size=cfg.image_size,
                embedding_dim=int(test_emb.shape[1]),
                temperature=evaluation["calibration"]["temperature"],
                files=files,
                metrics=summary,
                gates=gate.as_dict(),
                dataset=version.dataset,
                dataset_version=version.id,
                run_id=run_id,
                params=cfg.model_dump(exclude={"search"}),
                parity=parity.as_dict(),
                quantization=quantized.as_dict() if quantized else None,
                reference=reference,
                git=bundle.git_commit(),
            )
            files[bundle.CARD] = bundle.card(meta).encode()
            meta["files"][bundle.CARD] = sha256_hex(files[bundle.CARD])
            files[bundle.METADATA] = bundle.serialise(meta)
            return files

        registered = self.registry.register(
            self.config.model.name,
            make_files,
            run_id=run_id,
            dataset=version.dataset,
            dataset_version=version.id,
            metrics=summary,
            gates_passed=gate.passed,
            gate_reasons=gate.reasons,
            actor=options.actor,
        )
        champion = self._maybe_champion(registered, options.actor)
        self.tracker.finish(
            run_id,
            "completed",
            {
                "test_accuracy": evaluation["accuracy"],
                "best_epoch": fit.best_epoch,
                "epochs_run": fit.epochs_run,
                "val_accuracy": fit.best_val_accuracy,
                "weights_sha256": weights_sha,
                "predictions_sha256": predictions_sha,
                "model": registered.ref,
                "gates_passed": gate.passed,
            },
        )
        say(f"registered {registered.ref}" + (" (now champion)" if champion else ""))
        return BuildResult(
            model=self.registry.resolve(registered.ref),
            run_id=run_id,
            study=study,
            params=cfg.model_dump(exclude={"search"}),
            trials=trials,
            evaluation=evaluation,
            gates=gate.as_dict(),
            parity=parity.as_dict(),
            quantization=quantized.as_dict() if quantized else None,
            history=[h.__dict__ for h in fit.history],
            seconds=time.perf_counter() - began,
            champion=champion,
        )

    def _maybe_champion(self, model: ModelVersion, actor: str) -> bool:
        """Move ``champion`` to a model that passed its gates and is at least as accurate."""
        if not model.gates_passed:
            return False
        try:
            current = self.registry.resolve(f"{model.name}@champion")
        except Exception:
            current = None
        if current is not None and current.metrics.get("accuracy", 0) > model.metrics["accuracy"]:
            return False
        self.registry.set_alias(
            model.name,
            "champion",
            model.version,
            actor=actor,
            reason=f"passed gates with test accuracy {model.metrics['accuracy']:.4f}",
            kind="champion",
        )
        return True


def _attrs(row: Row) -> dict[str, str]:
    data: dict[str, str] = json.loads(row.attrs or "{}")
    return data


def _summary(evaluation: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": evaluation["accuracy"],
        "macro_f1": evaluation["macro_f1"],
        "n": evaluation["n"],
        "per_class": evaluation["per_class"],
        "bias": {k: evaluation["bias"][k] for k in ("recall_gap", "predicted_rate_ratio")},
        "ece": evaluation["calibration"]["ece_after"],
    }


def _reference(
    rows: list[Row],
    train_idx: np.ndarray,
    held_logits: np.ndarray,
    held_emb: np.ndarray,
    classes: list[str],
    temperature: float,
) -> dict[str, Any]:
    """Training-time reference statistics, computed once, for monitoring to compare against:
    summaries for people, samples and a PCA of the embedding for the drift tests."""
    stats: dict[str, Any] = {}
    samples: dict[str, np.ndarray] = {}
    for key in IMAGE_STATS:
        values = np.array([getattr(rows[i], key) for i in train_idx], dtype=np.float64)
        samples[key] = values
        stats[key] = {
            "quantiles": np.quantile(values, np.linspace(0, 1, 21)).tolist(),
            "mean": float(values.mean()),
            "std": float(values.std()),
        }
    labels = [rows[i].label for i in train_idx]
    probs = softmax(held_logits, temperature)
    return {
        "image_stats": stats,
        "class_ratio": {c: labels.count(c) / len(labels) for c in sorted(set(labels))},
        **reference_statistics(samples, probs, classes, held_emb),
    }
