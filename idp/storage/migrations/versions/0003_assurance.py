"""identity assurance: verification records and the per-client release policy (issue 10)

Revision ID: 0003_assurance
Revises: 0006_departments
Create Date: 2026-12-03 08:45:00
"""

import sqlalchemy as sa
from alembic import op

import idp.storage.models

revision = "0003_assurance"
down_revision = "0006_departments"  # the head of main when merged (0003 was kept for this file)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_verifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=4), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("txn", sa.String(length=64), nullable=False),
        sa.Column("verifier", sa.String(length=200), nullable=False),
        sa.Column(
            "verified_at", idp.storage.models.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_identity_verifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_verifications")),
    )
    with op.batch_alter_table("identity_verifications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_verifications_user_id"), ["user_id"], unique=False
        )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_verified_claims", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("min_assurance", sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column("account_types", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("account_types")
        batch_op.drop_column("min_assurance")
        batch_op.drop_column("allowed_verified_claims")
    with op.batch_alter_table("identity_verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_verifications_user_id"))
    op.drop_table("identity_verifications")
