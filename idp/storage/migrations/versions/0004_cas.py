"""CAS server: registered services, service tickets, and CAS single logout in the outbox

Revision ID: 0004_cas
Revises: 0002_entities
Create Date: 2026-12-03 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import idp.storage.models


revision = '0004_cas'
down_revision = '0002_entities'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cas_services',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('service_url', sa.Text(), nullable=True),
    sa.Column('service_pattern', sa.Text(), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cas_services'))
    )
    op.create_table('cas_tickets',
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('service_id', sa.String(length=32), nullable=False),
    sa.Column('service', sa.Text(), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('primary', sa.Boolean(), nullable=False),
    sa.Column('created_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('consumed_at', idp.storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('session_index', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['service_id'], ['cas_services.id'], name=op.f('fk_cas_tickets_service_id_cas_services'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_cas_tickets_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('digest', name=op.f('pk_cas_tickets'))
    )
    with op.batch_alter_table('cas_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cas_tickets_service_id'), ['service_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cas_tickets_sid'), ['sid'], unique=False)

    with op.batch_alter_table('logout_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parameter', sa.String(length=32), server_default='logout_token', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('logout_deliveries', schema=None) as batch_op:
        batch_op.drop_column('parameter')

    with op.batch_alter_table('cas_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cas_tickets_sid'))
        batch_op.drop_index(batch_op.f('ix_cas_tickets_service_id'))

    op.drop_table('cas_tickets')
    op.drop_table('cas_services')
