"""The Overview's Data card sits beside the champion: it shows the dataset version the
champion was trained on, not the newest dataset of any name (which implied a lineage that
was not there)."""

from __future__ import annotations

from pathlib import Path

from kennel.db.registry import RegistryStore
from kennel.serve.auth import Identity
from kennel.ui.views import overview
from kennel.wiring import Workspace
from tests.conftest import make_project
from tests.helpers import jpeg


def _folder(root: Path, n: int, seed: int) -> Path:
    for k, label in enumerate(("cat", "dog")):
        (root / label).mkdir(parents=True)
        for i in range(n):
            picture = jpeg(64, 64, seed=seed * 1000 + k * 100 + i)
            (root / label / f"{i}.jpg").write_bytes(picture)
    return root


def test_the_data_card_shows_what_the_champion_was_trained_on(tmp_path: Path) -> None:
    ws = Workspace(make_project(tmp_path / "p"))
    try:
        viewer = Identity("tok_v", "vera", "viewer")
        pets = ws.ingestor(1).run(ws.source(str(_folder(tmp_path / "pets", 4, 1))), "pets")
        assert overview(ws, viewer).dataset.id == pets.version.id  # no champion yet
        big = ws.ingestor(1).run(ws.source(str(_folder(tmp_path / "big", 6, 2))), "big")
        # no champion: the pipeline's dataset (pets), not the newest of any name (big)
        assert overview(ws, viewer).dataset.id == pets.version.id
        registry = RegistryStore(ws.db)
        registry.add_version("pets", lambda v: {"model.onnx": f"{v:064x}"}, run_id=None,
                             dataset="big", dataset_version=big.version.id, metrics={},
                             gates_passed=True, gate_reasons=[], actor="kennel")  # fmt: skip
        registry.move_alias("pets", "champion", 1, actor="kennel", reason="best", kind="champion",
                            token=None)  # fmt: skip
        shown = overview(ws, viewer)
        assert shown.champion is not None and shown.champion.version == 1
        assert shown.dataset.id == big.version.id  # what pets@1 was trained on
    finally:
        ws.close()
