"""contact_stages: the current stage leaves the wide contacts row; stage rows go with their contact by a trigger

A first full recompute gives every contact a stage: narrow inserts instead of rewriting every contacts row and its
indexes. stage_changes loses its per-row foreign key to contacts; a trigger on contacts deletes a deleted
contact's stage rows instead, so the workspace cascade and every other delete still leave none behind.

Revision ID: 0017contactstages
Revises: 0016childrowsfk
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017contactstages"
down_revision: str | None = "0016childrowsfk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

TRIGGERS = {
    "postgresql": [
        """CREATE FUNCTION contacts_forget_stages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM stage_changes WHERE contact_id IN (SELECT id FROM gone);
    DELETE FROM contact_stages WHERE contact_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$""",
        """CREATE TRIGGER contacts_forget_stages AFTER DELETE ON contacts REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION contacts_forget_stages()""",
    ],
    "sqlite": [
        """CREATE TRIGGER contacts_forget_stages AFTER DELETE ON contacts BEGIN
    DELETE FROM stage_changes WHERE contact_id = OLD.id;
    DELETE FROM contact_stages WHERE contact_id = OLD.id;
END""",
    ],
}
DROP_TRIGGERS = {
    "postgresql": [
        "DROP TRIGGER contacts_forget_stages ON contacts",
        "DROP FUNCTION contacts_forget_stages()",
    ],
    "sqlite": ["DROP TRIGGER contacts_forget_stages"],
}


def upgrade() -> None:
    op.create_table(
        "contact_stages",
        sa.Column("contact_id", BigId, autoincrement=False, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("stage_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_contact_stages")),
    )
    op.create_index("ix_contact_stages_workspace_stage", "contact_stages", ["workspace_id", "stage"], unique=False)
    op.execute(
        "INSERT INTO contact_stages (contact_id, workspace_id, stage, stage_at) "
        "SELECT id, workspace_id, stage, stage_at FROM contacts WHERE stage IS NOT NULL"
    )
    op.drop_index("ix_contacts_workspace_stage", table_name="contacts")
    # Plain columns (no index, key or constraint left): dropped in place on both backends, no table rebuild.
    op.drop_column("contacts", "stage_at")
    op.drop_column("contacts", "stage")
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.drop_constraint("fk_stage_changes_contact_id_contacts", type_="foreignkey")
    for statement in TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_TRIGGERS[op.get_bind().dialect.name]:
        op.execute(statement)
    op.execute("DELETE FROM stage_changes WHERE contact_id NOT IN (SELECT id FROM contacts)")
    with op.batch_alter_table("stage_changes", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_stage_changes_contact_id_contacts", "contacts", ["contact_id"], ["id"], ondelete="CASCADE"
        )
    op.add_column("contacts", sa.Column("stage", sa.String(length=20), nullable=True))
    op.add_column("contacts", sa.Column("stage_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE contacts SET stage = (SELECT s.stage FROM contact_stages s WHERE s.contact_id = contacts.id), "
        "stage_at = (SELECT s.stage_at FROM contact_stages s WHERE s.contact_id = contacts.id)"
    )
    op.create_index("ix_contacts_workspace_stage", "contacts", ["workspace_id", "stage"], unique=False)
    op.drop_table("contact_stages")
