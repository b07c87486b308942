"""label_disputes.files: some of the files that offered each disputed content (uri -> label),
so that a file of a failed first ingest, whose records are gone, still names its dispute

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("label_disputes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("files", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("label_disputes", schema=None) as batch_op:
        batch_op.drop_column("files")
