"""DPoP (RFC 9449) bindings and decoupled sign-in requests (QR login, RFC 8628) (issue 13)

Revision ID: 0011_dpop_qr
Revises: 0010_upstream
Create Date: 2026-12-03 12:20:00
"""

import sqlalchemy as sa
from alembic import op

import idp.storage.models

revision = "0011_dpop_qr"
down_revision = "0010_upstream"  # the head of main when merged
branch_labels = None
depends_on = None

_DATETIME = idp.storage.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jkt", sa.String(length=64), nullable=True))
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "dpop_bound_access_tokens",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
    op.create_table(
        "device_requests",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("user_code_digest", sa.String(length=64), nullable=True),
        sa.Column("browser_digest", sa.String(length=64), nullable=True),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("matching_number", sa.String(length=8), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("acr", sa.String(length=64), nullable=True),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("expires_at", _DATETIME, nullable=False),
        sa.Column("decided_at", _DATETIME, nullable=True),
        sa.Column("last_polled_at", _DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_requests")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_device_requests_code_digest")),
        sa.UniqueConstraint(
            "user_code_digest", name=op.f("uq_device_requests_user_code_digest")
        ),
    )
    with op.batch_alter_table("device_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_device_requests_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("device_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_requests_expires_at"))
    op.drop_table("device_requests")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_column("dpop_bound_access_tokens")
    with op.batch_alter_table("authorization_codes", schema=None) as batch_op:
        batch_op.drop_column("dpop_jkt")
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_column("jkt")
