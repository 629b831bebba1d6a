"""citizen rights: contested ID-number claims and the closing of an account (issue 15)

Revision ID: 0009_citizen
Revises: 0008_console
Create Date: 2026-12-03 12:30:00
"""

import sqlalchemy as sa
from alembic import op

import idp.storage.models

revision = "0009_citizen"
down_revision = "0008_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id_claim_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                "close_requested_at", idp.storage.models.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("close_after", idp.storage.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_users_id_claim_digest"), ["id_claim_digest"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_id_claim_digest"))
        batch_op.drop_column("close_after")
        batch_op.drop_column("close_requested_at")
        batch_op.drop_column("id_claim_digest")
