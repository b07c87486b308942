"""file_states: the sha256 last read from each local file ingested, with the stat it had
(kennel.ingest.filestate), so that a re-ingest of a folder reads only what changed

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "file_states",
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("stat", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("uri"),
    )


def downgrade() -> None:
    op.drop_table("file_states")
