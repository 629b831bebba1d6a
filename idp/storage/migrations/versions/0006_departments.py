"""Departments own clients; department admins; RFC 7591 initial access tokens (issue 11)

The free-text ``clients.department`` (never checked against anything) gives way to
``clients.department_id``, a reference to a department.

Revision ID: 0006_departments
Revises: 0005_email_lower
Create Date: 2026-12-05 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import idp.storage.models


revision = '0006_departments'
down_revision = '0005_email_lower'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('departments',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_departments'))
    )
    op.create_table('admin_roles',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('department_id', sa.String(length=64), nullable=True),
    sa.Column('granted_by', sa.String(length=200), nullable=False),
    sa.Column('granted_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_admin_roles_department_id_departments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_admin_roles_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_roles')),
    sa.UniqueConstraint('user_id', 'role', 'department_id', name='uq_admin_roles_grant')
    )
    with op.batch_alter_table('admin_roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_roles_user_id'), ['user_id'], unique=False)

    op.create_table('registration_tokens',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('department_id', sa.String(length=64), nullable=False),
    sa.Column('uses_left', sa.Integer(), nullable=False),
    sa.Column('expires_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', idp.storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', idp.storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_registration_tokens_department_id_departments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registration_tokens')),
    sa.UniqueConstraint('digest', name=op.f('uq_registration_tokens_digest'))
    )
    with op.batch_alter_table('registration_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registration_tokens_department_id'), ['department_id'], unique=False)

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('registration_access_digest', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_clients_department_id'), ['department_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_clients_department_id_departments'), 'departments', ['department_id'], ['id'], ondelete='RESTRICT')
        batch_op.drop_column('department')


def downgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('department', sa.String(length=64), nullable=True))
        batch_op.drop_constraint(batch_op.f('fk_clients_department_id_departments'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_clients_department_id'))
        batch_op.drop_column('registration_access_digest')
        batch_op.drop_column('department_id')

    with op.batch_alter_table('registration_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registration_tokens_department_id'))

    op.drop_table('registration_tokens')
    with op.batch_alter_table('admin_roles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_roles_user_id'))

    op.drop_table('admin_roles')
    op.drop_table('departments')
