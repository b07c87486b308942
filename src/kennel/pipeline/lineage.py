"""Lineage as queries over recorded links: model version -> run -> study trials -> dataset
version -> its parent chain -> source files."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kennel.datasets.versioning import DatasetCatalog, DatasetVersion
from kennel.registry.store import ModelRegistry
from kennel.train.tracking import RunTracker


def model_lineage(
    ref: str,
    *,
    registry: ModelRegistry,
    tracker: RunTracker,
    catalog: DatasetCatalog,
    files_limit: int | None = 20,
) -> dict[str, Any]:
    model = registry.resolve(ref)
    out: dict[str, Any] = {"model": model.as_dict()}
    if model.run_id is None:
        return out
    run = tracker.get(model.run_id)
    out["run"] = {**run.as_dict(), "epochs": tracker.epochs(run.id)}
    if run.study:
        out["study"] = {
            "id": run.study,
            "trials": [
                {
                    "run_id": t.id,
                    "trial": t.trial_number,
                    "status": t.status,
                    "params": {
                        k: t.params.get(k)
                        for k in ("lr", "weight_decay", "augment", "arch", "image_size", "epochs")
                    },
                    "val_accuracy": t.metrics.get("val_accuracy"),
                }
                for t in tracker.runs(study=run.study, kind="trial")
            ],
        }
    if run.init_from:
        out["warm_start_from"] = run.init_from
    version = catalog.resolve(f"{run.dataset}@{run.dataset_version}")
    chain = []
    cursor: DatasetVersion | None = version
    while cursor is not None:
        chain.append(
            {
                "ref": cursor.ref,
                "id": cursor.id,
                "rows": cursor.n_rows,
                "source": cursor.summary.get("source"),
            }
        )
        cursor = (
            catalog.resolve(f"{cursor.dataset}@{cursor.parent_id}") if cursor.parent_id else None
        )
    table = catalog.table(version)  # columns only: a 100k-file version stays quick to trace
    training = pc.is_in(table["split"], value_set=pa.array(["train", "validation"]))
    uris = table["uri"].filter(training)
    out["dataset"] = {
        "version": version.as_dict(),
        "ancestry": chain,
        "training_files": len(uris),
        "source_files": (uris if files_limit is None else uris[:files_limit]).to_pylist(),
    }
    return out
