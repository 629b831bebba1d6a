"""Upstream federation: accounts linked to the national platform, and which SSO sessions
began there (issue 13 item 3)

Revision ID: 0010_upstream
Revises: 0009_citizen
Create Date: 2026-12-03 12:45:00
"""
from alembic import op
import sqlalchemy as sa
import idp.storage.models


revision = '0010_upstream'
down_revision = '0009_citizen'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('upstream_links',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_upstream_links_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_links')),
    sa.UniqueConstraint('issuer', 'subject', name='uq_upstream_links_subject'),
    sa.UniqueConstraint('issuer', 'user_id', name='uq_upstream_links_user')
    )
    with op.batch_alter_table('upstream_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_links_user_id'), ['user_id'], unique=False)

    op.create_table('upstream_sessions',
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('issuer', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('upstream_sid', sa.String(length=255), nullable=True),
    sa.Column('created_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sid'], ['sso_sessions.id'], name=op.f('fk_upstream_sessions_sid_sso_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sid', name=op.f('pk_upstream_sessions'))
    )
    with op.batch_alter_table('upstream_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_sessions_subject'), ['subject'], unique=False)
        batch_op.create_index(batch_op.f('ix_upstream_sessions_upstream_sid'), ['upstream_sid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('upstream_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_sessions_upstream_sid'))
        batch_op.drop_index(batch_op.f('ix_upstream_sessions_subject'))

    op.drop_table('upstream_sessions')
    with op.batch_alter_table('upstream_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_links_user_id'))

    op.drop_table('upstream_links')
