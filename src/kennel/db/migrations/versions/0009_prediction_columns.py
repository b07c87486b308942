"""predictions: what monitoring reads as typed columns (kennel.db.predcols): the class
probabilities packed as float64 beside their class names, the image statistics and the pet
judgement as numbers; back-filled from each row's probabilities and quality JSON, which stay

Revision ID: 0009
Revises: 0008
"""

import json
import struct
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATS = ("brightness", "contrast", "sharpness", "width", "height", "pet")
_BATCH = 5000

_predictions = sa.table(
    "predictions",
    sa.column("id", sa.String(32)),
    sa.column("probabilities", sa.JSON()),
    sa.column("quality", sa.JSON()),
    sa.column("class_names", sa.Text()),
    sa.column("class_probs", sa.LargeBinary()),
    *(sa.column(k, sa.Float()) for k in STATS),
)


def _typed(probabilities: dict[str, Any] | None, quality: dict[str, Any] | None) -> dict[str, Any]:
    # as kennel.db.predcols.encode wrote them at this revision
    probabilities, quality = probabilities or {}, quality or {}
    names = list(probabilities)
    out: dict[str, Any] = {
        "class_names": json.dumps(names, separators=(",", ":")),
        "class_probs": struct.pack(f"<{len(names)}d", *(float(probabilities[c]) for c in names)),
    }
    for key in STATS:
        value = quality.get(key)
        out[key] = None if value is None else float(value)
    return out


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("class_names", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("class_probs", sa.LargeBinary(), nullable=True))
        for key in STATS:
            batch_op.add_column(sa.Column(key, sa.Float(), nullable=True))
    # Every row written so far, in batches by id (keyset: no OFFSET rescans), one UPDATE
    # statement per batch (bindparams named apart from the columns they set).
    bind = op.get_bind()
    p = _predictions.c
    update = (
        _predictions.update()
        .where(p.id == sa.bindparam("row_id"))
        .values({c: sa.bindparam(f"new_{c}") for c in ("class_names", "class_probs", *STATS)})
    )
    last = ""
    while True:
        rows = bind.execute(
            sa.select(p.id, p.probabilities, p.quality)
            .where(p.id > last)
            .order_by(p.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            break
        values = [(r.id, _typed(r.probabilities, r.quality)) for r in rows]
        bind.execute(
            update, [{"row_id": i, **{f"new_{k}": v for k, v in t.items()}} for i, t in values]
        )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        for key in reversed(STATS):
            batch_op.drop_column(key)
        batch_op.drop_column("class_probs")
        batch_op.drop_column("class_names")
