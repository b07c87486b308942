"""monitor runs: every model version a window holds, not only the most common one

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_runs = sa.table(
    "monitor_runs",
    sa.column("version", sa.Integer()),
    sa.column("versions", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("versions", sa.JSON(), nullable=True))
    # A run recorded before this column knew one version (or none, for an empty window):
    # that is all it can list. One statement per distinct version, never per run.
    bind = op.get_bind()
    known = bind.execute(
        sa.select(_runs.c.version).where(_runs.c.version.is_not(None)).distinct()
    ).scalars()
    for version in list(known):
        bind.execute(_runs.update().where(_runs.c.version == version).values(versions=[version]))
    bind.execute(_runs.update().where(_runs.c.version.is_(None)).values(versions=[]))
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.alter_column("versions", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("monitor_runs", schema=None) as batch_op:
        batch_op.drop_column("versions")
