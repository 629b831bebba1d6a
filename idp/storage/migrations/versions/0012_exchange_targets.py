"""Per-client RFC 8693 token-exchange targets (issue 10)

Revision ID: 0012_exchange_targets
Revises: 0011_dpop_qr
Create Date: 2026-12-04 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_exchange_targets"
down_revision = "0011_dpop_qr"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing clients may exchange for nothing until an operator names their targets.
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("exchange_targets", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("exchange_targets")
