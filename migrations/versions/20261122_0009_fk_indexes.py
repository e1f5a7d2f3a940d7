"""Lead per-contact and per-order indexes with the foreign key itself.

Contact and order ids are global, so ``(contact_id, time)`` serves the per-contact queries as well as
``(workspace_id, contact_id, time)`` did, and it also lets a cascading delete of a contact or order find
its children without scanning the whole child table.

Revision ID: 0009fkindexes
Revises: 0008segments
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009fkindexes"
down_revision: str | None = "0008segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = [
    ("ix_identities_contact", "identities", ["contact_id"]),
    ("ix_stage_changes_contact", "stage_changes", ["contact_id", "changed_at"]),
    ("ix_orders_contact_time", "orders", ["contact_id", "placed_at"]),
    ("ix_order_lines_order", "order_lines", ["order_id"]),
    ("ix_order_lines_product", "order_lines", ["product_id"]),
    ("ix_touches_contact_time", "touches", ["contact_id", "occurred_at"]),
]
OLD = {
    "ix_identities_contact": ["workspace_id", "contact_id"],
    "ix_stage_changes_contact": ["workspace_id", "contact_id", "changed_at"],
    "ix_orders_contact_time": ["workspace_id", "contact_id", "placed_at"],
    "ix_order_lines_order": ["workspace_id", "order_id"],
    "ix_order_lines_product": ["workspace_id", "product_id"],
    "ix_touches_contact_time": ["workspace_id", "contact_id", "occurred_at"],
}


def upgrade() -> None:
    for name, table, columns in NEW:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in NEW:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, OLD[name])
