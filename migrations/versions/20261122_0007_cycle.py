"""cycle outbox: stage transitions kept until a consumer stamps them published

Revision ID: 0007cycle
Revises: 50bc96bfc81e
Create Date: 2026-11-22 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007cycle"
down_revision: str | None = "50bc96bfc81e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cycle_outbox",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("from_stage", sa.String(length=20), nullable=True),
        sa.Column("to_stage", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_cycle_outbox_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_cycle_outbox_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_outbox")),
    )
    with op.batch_alter_table("cycle_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_cycle_outbox_unpublished", ["published_at", "id"], unique=False)
        batch_op.create_index("ix_cycle_outbox_contact", ["workspace_id", "contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cycle_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_cycle_outbox_contact")
        batch_op.drop_index("ix_cycle_outbox_unpublished")
    op.drop_table("cycle_outbox")
