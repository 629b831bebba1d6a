"""Client secret rotation with a grace period; English name, logo, purpose, requested release; departments bound to staff directories (issue 11)

Revision ID: 0008_console
Revises: 0007_exchange
Create Date: 2026-12-03 12:30:00
"""
from alembic import op
import sqlalchemy as sa
import idp.storage.models


revision = '0008_console'
down_revision = '0007_exchange'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_secret_digest', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', idp.storage.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('name_en', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('logo_uri', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('purpose', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('requested_release', sa.JSON(), nullable=True))
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('directories', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('departments', schema=None) as batch_op:
        batch_op.drop_column('directories')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('requested_release')
        batch_op.drop_column('purpose')
        batch_op.drop_column('logo_uri')
        batch_op.drop_column('name_en')
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret_digest')
