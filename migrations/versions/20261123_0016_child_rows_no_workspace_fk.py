"""stage_changes and order_lines: no foreign key to workspaces

A history row goes with its contact and an order line with its order (ON DELETE CASCADE), and the parent with its
workspace; the row's own workspace check was one more trigger call per row on the two largest bulk writes.

Revision ID: 0016childrowsfk
Revises: 0015cycledirty
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016childrowsfk"
down_revision: str | None = "0015cycledirty"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("stage_changes", "order_lines")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_workspace_id_workspaces", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(
                f"fk_{table}_workspace_id_workspaces", "workspaces", ["workspace_id"], ["id"], ondelete="CASCADE"
            )
