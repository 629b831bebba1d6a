"""token exchange and consent to released claims (issue 10)

``tokens.act``: the RFC 8693 ``act`` claim of a token minted by token exchange (the calling
client, nested over earlier actors).  ``consents.released``: the claims (and verified claims)
the person agreed to release, so a consent is asked again when the released set grows.

Revision ID: 0007_exchange
Revises: 0003_assurance
Create Date: 2026-12-03 12:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_exchange"
down_revision = "0003_assurance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("act", sa.JSON(), nullable=True))
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("released", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("released")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("act")
