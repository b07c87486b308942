"""alias history: the kind of each move as data (deploy, release, rollback, ...)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="set")
        )
    # Before this column the kind lived in the free-text reason; carry the old rollbacks over
    # once so that replaying an old history still finds them.
    op.execute("UPDATE alias_events SET kind = 'rollback' WHERE reason LIKE 'rollback%'")


def downgrade() -> None:
    with op.batch_alter_table("alias_events", schema=None) as batch_op:
        batch_op.drop_column("kind")
