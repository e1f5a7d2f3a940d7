"""cycle_dirty: contacts whose facts changed since their stage was computed, drained by the worker

Revision ID: 0015cycledirty
Revises: 0014dsn
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015cycledirty"
down_revision: str | None = "0014dsn"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cycle_dirty",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_cycle_dirty_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle_dirty")),
        sa.UniqueConstraint("workspace_id", "contact_id", name="uq_cycle_dirty_contact"),
    )


def downgrade() -> None:
    op.drop_table("cycle_dirty")
