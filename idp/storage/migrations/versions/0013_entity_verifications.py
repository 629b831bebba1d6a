"""Companies' own verification records: L3 enterprise registry, L5 electronic licence (issue 10)

Revision ID: 0013_entity_verifications
Revises: 0012_exchange_targets
Create Date: 2026-12-04 09:30:00
"""

import sqlalchemy as sa
from alembic import op

import idp.storage.models

revision = "0013_entity_verifications"
down_revision = "0012_exchange_targets"
branch_labels = None
depends_on = None

_DATETIME = idp.storage.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "entity_verifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.String(length=4), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("txn", sa.String(length=64), nullable=False),
        sa.Column("verifier", sa.String(length=200), nullable=False),
        sa.Column("verified_at", _DATETIME, nullable=False),
        sa.Column("expires_at", _DATETIME, nullable=False),
        sa.Column("withdrawn_at", _DATETIME, nullable=True),
        sa.Column("withdrawn_reason", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["legal_entities.id"],
            name=op.f("fk_entity_verifications_entity_id_legal_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entity_verifications")),
    )
    op.create_index(
        op.f("ix_entity_verifications_entity_id"),
        "entity_verifications",
        ["entity_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_entity_verifications_entity_id"), table_name="entity_verifications")
    op.drop_table("entity_verifications")
