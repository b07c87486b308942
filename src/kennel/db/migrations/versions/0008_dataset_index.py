"""dataset versions: the content digest of the index stored when the version was committed
(kennel.datasets.index; none for older versions, whose index is built from the manifest when
asked); a run's ingest records by status in file order (a version's quarantined files, paged)

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("index_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_ingest_records_run_status_seq",
        "ingest_records",
        ["run_id", "status", "seq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_ingest_records_run_status_seq", table_name="ingest_records")
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_column("index_sha256")
