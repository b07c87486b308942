"""file_states: each file's width and height beside its sha256, so a re-ingest checks the
limits without joining every state to its item (the join was most of the lookup's time);
back-filled from items, and a state whose item is unknown keeps none (it is read again)

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("file_states", schema=None) as batch_op:
        batch_op.add_column(sa.Column("width", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("height", sa.Integer(), nullable=True))
    states = sa.table("file_states", *(sa.column(c) for c in ("sha256", "width", "height")))
    items = sa.table("items", *(sa.column(c) for c in ("sha256", "width", "height")))
    of_item = items.c.sha256 == states.c.sha256
    op.get_bind().execute(
        states.update().values(
            width=sa.select(items.c.width).where(of_item).scalar_subquery(),
            height=sa.select(items.c.height).where(of_item).scalar_subquery(),
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("file_states", schema=None) as batch_op:
        batch_op.drop_column("height")
        batch_op.drop_column("width")
