"""prediction_blocks: a columnar copy (Arrow IPC) of each batch of predictions the log stores,
which monitoring windows read instead of the rows (kennel.db.predblocks); rows stored before
this revision have no block and their windows keep reading the rows

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_blocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_prediction_blocks_environment_last_at",
        "prediction_blocks",
        ["environment", "last_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_prediction_blocks_environment_last_at", table_name="prediction_blocks")
    op.drop_table("prediction_blocks")
