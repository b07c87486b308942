"""What the dashboard's fixture project lacks for the Datasets and Runs pages, added through
kennel's own calls: a second dataset version (from a manifest with a slice column, holding an
exact duplicate, a truncated file and a label conflict) and a tuning study recorded as
``kennel.train.tune.search`` records one (a tracked run per trial, per-epoch metrics, its
status), without spending a minute training four models."""

from __future__ import annotations

import csv
import shutil
import uuid
from pathlib import Path

from kennel.datasets.synth import MANIFEST, generate
from kennel.ingest.run import IngestReport
from kennel.wiring import Workspace

# trial -> (learning rate, how it ended, validation accuracy per epoch)
TRIALS = [(0.01, "completed", [0.55, 0.7, 0.8]), (0.1, "pruned", [0.5]),
          (0.001, "completed", [0.6, 0.65, 0.75]), (0.3, "failed", [])]  # fmt: skip


def second_version(ws: Workspace, root: Path, first_lake: Path) -> IngestReport:
    """Ingest 16 night images and three problem files into ``park`` (its v2, child of v1)."""
    lake = root / f"lake2-{uuid.uuid4().hex[:8]}"  # a second call (another module) has its own
    generate(lake, 16, seed=9, scenario="night")
    taken = sorted((first_lake / "cat").glob("*.jpg"))[0]
    (lake / "dog").mkdir(exist_ok=True)
    shutil.copy(taken, lake / "dog" / "conflict.jpg")  # labelled cat in v1 already
    twin = sorted((lake / "cat").glob("*.jpg"))[0]
    shutil.copy(twin, lake / "cat" / "again.jpg")  # the same bytes under a second name
    (lake / "cat" / "broken.jpg").write_bytes(twin.read_bytes()[:300])  # truncated
    with open(lake / MANIFEST, "a", newline="") as out:
        writer = csv.writer(out)
        for uri, label, index in (("dog/conflict.jpg", "dog", 900), ("cat/again.jpg", "cat", 901),
                                  ("cat/broken.jpg", "cat", 902)):  # fmt: skip
            writer.writerow([uri, label, "night", 9, index])
    return ws.ingestor().run(ws.source(str(lake / MANIFEST)), "park")


def record_study(ws: Workspace) -> tuple[str, list[str]]:
    """A finished study over ``park``'s newest version; returns its id and its trials' run ids."""
    version = ws.catalog.latest("park")
    assert version is not None
    study, runs = uuid.uuid4().hex[:16], []
    for trial, (lr, status, accuracies) in enumerate(TRIALS):
        run_id = ws.tracker.start(kind="trial", dataset="park", dataset_version=version.id,
                                  params={"arch": "small_cnn", "lr": lr, "epochs": 3},
                                  study=study, trial_number=trial)  # fmt: skip
        for epoch, accuracy in enumerate(accuracies, 1):
            values = {"train_loss": 1.2 / epoch, "val_loss": 1.3 / epoch, "val_accuracy": accuracy}
            ws.tracker.log_epoch(run_id, epoch, values)
        final = accuracies[-1] if status == "completed" else 0.0
        ws.tracker.finish(run_id, status, {"val_accuracy": final})
        runs.append(run_id)
    return study, runs
