"""lead scoring: trained models per workspace and the latest score of each contact

Revision ID: 0012scoring
Revises: 0011messaging
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012scoring"
down_revision: str | None = "0011messaging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "scoring_models",
        sa.Column("id", BigId, nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("half_life_days", sa.Float(), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_scoring_models_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoring_models")),
    )
    with op.batch_alter_table("scoring_models", schema=None) as batch_op:
        batch_op.create_index("ix_scoring_models_workspace_trained", ["workspace_id", "trained_at"], unique=False)

    op.create_table(
        "contact_scores",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("model_id", BigId, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("logit", sa.Float(), nullable=False),
        sa.Column("fit", sa.Float(), nullable=False),
        sa.Column("engagement", sa.Float(), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_contact_scores_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["scoring_models.id"],
            name=op.f("fk_contact_scores_model_id_scoring_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_contact_scores_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_scores")),
        sa.UniqueConstraint("contact_id", name="uq_contact_scores_contact_id"),
    )
    with op.batch_alter_table("contact_scores", schema=None) as batch_op:
        batch_op.create_index("ix_contact_scores_workspace_score", ["workspace_id", "score"], unique=False)
        batch_op.create_index("ix_contact_scores_model", ["model_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("contact_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_scores_model")
        batch_op.drop_index("ix_contact_scores_workspace_score")
    op.drop_table("contact_scores")
    with op.batch_alter_table("scoring_models", schema=None) as batch_op:
        batch_op.drop_index("ix_scoring_models_workspace_trained")
    op.drop_table("scoring_models")
