"""KEK rotation covers every sealed value, not only signing keys (issue 4 item 2)."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy import select

from idp.accounts.people import find_citizen
from idp.rewrap import rewrap_sealed_data
from idp.storage.models import User
from keys.crypto import Kek, KekError, KekRing
from tests.helpers import TEST_KEK, Citizen

NEW_KEK = base64.urlsafe_b64encode(b"n" * 32).rstrip(b"=").decode()


@pytest.fixture(autouse=True)
def fresh_signing_keys(database_url):
    """These tests re-seal the run's signing keys; drop them afterwards so later tests start
    from keys sealed with the test KEK again."""
    yield
    from sqlalchemy import create_engine, delete

    from idp.storage.models import SigningKey

    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(delete(SigningKey))
    engine.dispose()


def test_rewrap_moves_identity_numbers_and_old_kek_can_go(make_app, tmp_path):
    app = make_app()
    citizen = Citizen.create(app)
    services = app.extensions["yitong"]
    old, new = Kek.from_text(TEST_KEK), Kek.from_text(NEW_KEK)
    with services.db.transaction() as session:
        report = rewrap_sealed_data(session, KekRing.of(new, (old,)))
    assert report.counts == {"identity_numbers": 1}
    with services.db.transaction() as session:  # idempotent: nothing left to move
        assert rewrap_sealed_data(session, KekRing.of(new, (old,))).counts == {}
    # The signing keys move with `yitong keys rewrap`; here only the sealed data matters.
    services.keys.rewrap(new, old_keks=[old])
    app2 = make_app(key_encryption_key=NEW_KEK)
    s2 = app2.extensions["yitong"]
    with s2.db.session() as session:
        user = find_citizen(session, citizen.id_number, vault=s2.vault)
        assert user is not None and s2.vault.open(user.id_number_ciphertext) == citizen.id_number


def test_unknown_kek_fails_loudly_and_changes_nothing(make_app):
    app = make_app()
    Citizen.create(app)
    services = app.extensions["yitong"]
    stranger = Kek.generate()
    with services.db.session() as session:
        before = session.scalars(select(User.id_number_ciphertext)).all()
    with pytest.raises(KekError), services.db.transaction() as session:
        rewrap_sealed_data(session, KekRing.of(stranger))
    with services.db.session() as session:
        assert session.scalars(select(User.id_number_ciphertext)).all() == before


def test_previous_kek_file_keeps_old_data_readable(make_app, tmp_path):
    app = make_app()
    citizen = Citizen.create(app)
    app.extensions["yitong"].keys.rewrap(Kek.from_text(NEW_KEK), old_keks=[Kek.from_text(TEST_KEK)])
    old_file = tmp_path / "old.kek"
    old_file.write_text(TEST_KEK + "\n")
    app2 = make_app(key_encryption_key=NEW_KEK, previous_key_encryption_key_files=(str(old_file),))
    s2 = app2.extensions["yitong"]
    with s2.db.session() as session:
        user = session.get(User, citizen.id)
        assert s2.vault.open(user.id_number_ciphertext) == citizen.id_number
