"""bounces and complaints read from delivery status notifications: an event's status code and its dedupe key

Revision ID: 0014dsn
Revises: 0013models
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014dsn"
down_revision: str | None = "0013models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_code", sa.String(length=16), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=100), nullable=True))
        batch_op.create_unique_constraint("uq_message_events_workspace_dedupe", ["workspace_id", "dedupe_key"])


def downgrade() -> None:
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_message_events_workspace_dedupe", type_="unique")
        batch_op.drop_column("dedupe_key")
        batch_op.drop_column("status_code")
