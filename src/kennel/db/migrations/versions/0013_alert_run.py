"""alerts: the monitoring run whose verdict opened each alert, so that an incident belongs to
the versions of that run's window (a compliance report looked the run up by time, and a
second run stored in between took the incident); NULL for alerts opened before

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("run_id")
