"""stored model results: lifetime-value fits and predictions, related-product rules and best sellers

Revision ID: 0013models
Revises: 0012scoring
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013models"
down_revision: str | None = "0012scoring"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONType = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_fits",
        sa.Column("id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("metrics", JSONType, nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_model_fits_workspace_id_workspaces"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_fits")),
    )
    with op.batch_alter_table("model_fits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_model_fits_workspace_kind_fitted", ["workspace_id", "kind", "fitted_at"], unique=False
        )

    op.create_table(
        "best_sellers",
        sa.Column("id", BigId, nullable=False),
        sa.Column("segment_id", BigId, nullable=True),
        sa.Column("product_id", BigId, nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_best_sellers_product_id_products"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_best_sellers_segment_id_segments"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_best_sellers_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_best_sellers")),
    )
    with op.batch_alter_table("best_sellers", schema=None) as batch_op:
        batch_op.create_index("ix_best_sellers_lookup", ["workspace_id", "segment_id", "rank"], unique=False)
        batch_op.create_index("ix_best_sellers_product", ["product_id"], unique=False)
        batch_op.create_index("ix_best_sellers_segment", ["segment_id"], unique=False)

    op.create_table(
        "clv_predictions",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("fit_id", BigId, nullable=False),
        sa.Column("frequency", sa.Float(), nullable=False),
        sa.Column("recency_days", sa.Float(), nullable=False),
        sa.Column("age_days", sa.Float(), nullable=False),
        sa.Column("monetary_value", sa.Float(), nullable=False),
        sa.Column("probability_alive", sa.Float(), nullable=False),
        sa.Column("expected_purchases_90d", sa.Float(), nullable=False),
        sa.Column("expected_spend", sa.Float(), nullable=False),
        sa.Column("clv", sa.Float(), nullable=False),
        sa.Column("keep_in_touch_rank", sa.Integer(), nullable=True),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name=op.f("fk_clv_predictions_contact_id_contacts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["fit_id"], ["model_fits.id"], name=op.f("fk_clv_predictions_fit_id_model_fits"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_clv_predictions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clv_predictions")),
        sa.UniqueConstraint("contact_id", name="uq_clv_predictions_contact_id"),
    )
    with op.batch_alter_table("clv_predictions", schema=None) as batch_op:
        batch_op.create_index("ix_clv_predictions_fit", ["fit_id"], unique=False)
        batch_op.create_index("ix_clv_predictions_workspace_clv", ["workspace_id", "clv"], unique=False)
        batch_op.create_index("ix_clv_predictions_workspace_keep", ["workspace_id", "keep_in_touch_rank"], unique=False)

    op.create_table(
        "related_rules",
        sa.Column("id", BigId, nullable=False),
        sa.Column("antecedent_id", BigId, nullable=False),
        sa.Column("consequent_id", BigId, nullable=False),
        sa.Column("baskets", sa.Integer(), nullable=False),
        sa.Column("support", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("lift", sa.Float(), nullable=False),
        sa.Column("workspace_id", BigId, nullable=False),
        sa.ForeignKeyConstraint(
            ["antecedent_id"], ["products.id"], name=op.f("fk_related_rules_antecedent_id_products"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["consequent_id"], ["products.id"], name=op.f("fk_related_rules_consequent_id_products"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_related_rules_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_related_rules")),
    )
    with op.batch_alter_table("related_rules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_related_rules_antecedent", ["antecedent_id", "consequent_id", "confidence"], unique=False
        )
        batch_op.create_index("ix_related_rules_consequent", ["consequent_id"], unique=False)
        batch_op.create_index("ix_related_rules_workspace_lift", ["workspace_id", "lift"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("related_rules", schema=None) as batch_op:
        batch_op.drop_index("ix_related_rules_workspace_lift")
        batch_op.drop_index("ix_related_rules_consequent")
        batch_op.drop_index("ix_related_rules_antecedent")

    op.drop_table("related_rules")
    with op.batch_alter_table("clv_predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_clv_predictions_workspace_keep")
        batch_op.drop_index("ix_clv_predictions_workspace_clv")
        batch_op.drop_index("ix_clv_predictions_fit")

    op.drop_table("clv_predictions")
    with op.batch_alter_table("best_sellers", schema=None) as batch_op:
        batch_op.drop_index("ix_best_sellers_segment")
        batch_op.drop_index("ix_best_sellers_product")
        batch_op.drop_index("ix_best_sellers_lookup")

    op.drop_table("best_sellers")
    with op.batch_alter_table("model_fits", schema=None) as batch_op:
        batch_op.drop_index("ix_model_fits_workspace_kind_fitted")

    op.drop_table("model_fits")
