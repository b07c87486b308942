"""label_disputes: content offered under two labels in one dataset, kept out of it until a
settlement names its label (an ingest of one label's folder alone had added it, so which
label won depended on the order of later ingests)

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_disputes",
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_label", sa.String(128), nullable=True),
        sa.Column("settled_by", sa.String(128), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("dataset", "sha256"),
    )


def downgrade() -> None:
    op.drop_table("label_disputes")
