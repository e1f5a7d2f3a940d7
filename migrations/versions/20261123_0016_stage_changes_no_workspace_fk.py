"""stage_changes: no foreign key to workspaces (rows go with their contact, which goes with its workspace)

Revision ID: 0016stagechangesfk
Revises: 0015cycledirty
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016stagechangesfk"
down_revision: str | None = "0015cycledirty"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_stage_changes_workspace_id_workspaces"


def upgrade() -> None:
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.create_foreign_key(FK, "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE")
