"""RFC 8628 device authorization grant: the grant an approved device request leads to (issue 13)

Revision ID: 0014_device_grant
Revises: 0011_dpop_qr
Create Date: 2026-12-03 15:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_device_grant"
down_revision = "0013_entity_verifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("grant_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_requests", schema=None) as batch_op:
        batch_op.drop_column("grant_id")
