"""E-mail addresses are stored lower-cased (issue 14 item 10): fold existing rows.

Revision ID: 0005_email_lower
Revises: 0004_cas
Create Date: 2026-12-03 09:15:00

Lookups compare the lower-cased address, so a row stored before with capitals would no
longer be found.  Rows are folded unless two accounts would then share one address: those
are left as they are and logged, for an operator to resolve (merging accounts is a decision
about people, not a migration's).
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0005_email_lower'
down_revision = '0004_cas'
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, email FROM users WHERE email IS NOT NULL")).all()
    taken: dict[str, int] = {}
    for _id, email in rows:
        taken[email.lower()] = taken.get(email.lower(), 0) + 1
    for user_id, email in rows:
        folded = email.lower()
        if folded == email:
            continue
        if taken[folded] > 1:
            log.warning("e-mail of account %s differs from another only in case: left as is", user_id)
            continue
        bind.execute(
            sa.text("UPDATE users SET email = :e WHERE id = :i"), {"e": folded, "i": user_id}
        )


def downgrade() -> None:
    pass  # the original capitalisation is not kept
