"""order_lines: no foreign key to workspaces (lines go with their order, which goes with its workspace)

Revision ID: 0017orderlinesfk
Revises: 0016stagechangesfk
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017orderlinesfk"
down_revision: str | None = "0016stagechangesfk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_order_lines_workspace_id_workspaces"


def upgrade() -> None:
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.create_foreign_key(FK, "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE")
