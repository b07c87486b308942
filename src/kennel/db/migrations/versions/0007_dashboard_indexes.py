"""indexes for the dashboard's reads: requests per time bucket, a search by environment and
time, telemetry per metric and time (both covering: the aggregate reads no table row), the
monitoring windows of an environment by their end, the audit by actor and by action

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (name, table, columns); the first two replace single-column indexes they begin with
INDEXES = [
    ("ix_predictions_environment_at", "predictions", ["environment", "at", "latency_ms"]),
    ("ix_telemetry_metric_at", "telemetry", ["metric", "at", "source", "value"]),
    ("ix_monitor_runs_environment_until", "monitor_runs", ["environment", "until"]),
    ("ix_audit_log_actor", "audit_log", ["actor"]),
    ("ix_audit_log_action", "audit_log", ["action"]),
]
REPLACED = [
    ("ix_predictions_environment", "predictions", ["environment"]),
    ("ix_telemetry_metric", "telemetry", ["metric"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)
    for name, table, _columns in REPLACED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in REPLACED:
        op.create_index(name, table, columns, unique=False)
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)
