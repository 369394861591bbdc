"""The hashes kept instead of addresses (suppression list, erased and anonymised people) are keyed with
EMAIL_HASH_KEY, so a copy of the database cannot be matched against a list of addresses; the key is its own
setting, so rotating SECRET_KEY changes nothing about who is kept out; the upgrade converts stored hashes."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from sqlalchemy import select, text
from test_audience_api import Api

from mailer.accounts import create_token
from mailer.config import ConfigError, load_settings
from mailer.db import Database
from mailer.models import SEED_TOPICS, Subscriber, Suppression
from mailer.schema import migrate
from support.databases import database_of_its_own
from support.flows import legacy_token


def _bare(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()


def _keyed(address: str, key: str) -> str:
    return hmac.new(key.encode(), _bare(address).encode(), hashlib.sha256).hexdigest()


def _token(db) -> dict:
    with db.transaction() as s:
        _row, secret = create_token(s, "hash tests", role="admin")
    return {"Authorization": f"Bearer {secret}"}


def _add(client, headers, address: str) -> None:
    response = client.post(
        "/api/v1/subscribers",
        json={
            "email": address,
            "subscriptions": [{"topic": "trust-matters"}],
            "consent": {"source": "Paper form", "collected": True},
        },
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()


def _import(client, headers, *addresses: str) -> dict:
    body = "email,topics,consent_source\n" + "".join(f"{a},careers,Paper form\n" for a in addresses)
    response = Api(client, headers["Authorization"].removeprefix("Bearer ")).import_csv(body)
    assert response.status_code == 200 and response.get_json()["status"] == "finished", response.get_json()
    return response.get_json()


def test_the_hash_kept_after_erasure_is_keyed_not_bare_sha256(client, db, settings):
    headers = _token(db)
    _add(client, headers, "Erase.Me@example.org")
    assert client.delete("/api/v1/subscribers/erase.me@example.org", headers=headers).status_code == 204
    with db.sessions() as s:
        [kept] = s.scalars(select(Subscriber.email_hash))
        [suppressed] = s.scalars(select(Suppression.email_hash))
    # A list of addresses hashed with SHA-256 (or any unkeyed hash) finds nobody in a copy of the database.
    assert _bare("erase.me@example.org") not in (kept, suppressed)
    assert kept == suppressed == _keyed("erase.me@example.org", settings.email_hash_key)
    assert settings.email_hash_key != settings.secret_key


def test_rotating_secret_key_keeps_erased_and_bounced_people_out(client, db, settings):
    from mailer.audience.suppression import suppress
    from mailer.web import create_app

    headers = _token(db)
    _add(client, headers, "gone@example.org")
    _add(client, headers, "bounced@example.org")
    assert client.delete("/api/v1/subscribers/gone@example.org", headers=headers).status_code == 204
    with db.transaction() as s:
        suppress(s, [s.scalar(select(Subscriber.id).where(Subscriber.email_key == "bounced@example.org"))], "bounced")

    rotated = create_app(
        settings.with_overrides(
            secret_key="a-brand-new-secret-key-after-rotation-0123456789",
            secret_key_fallbacks=(settings.secret_key,),
        )
    )
    report = _import(rotated.test_client(), headers, "gone@example.org", "bounced@example.org", "new@example.org")
    assert (report["imported"], report["skipped"]) == (1, 2)  # only the new person
    with db.sessions() as s:
        assert s.scalar(select(Subscriber.id).where(Subscriber.email_key == "gone@example.org")) is None


def test_production_refuses_to_start_without_an_email_hash_key(tmp_path):
    production = {
        "MAILER_ENV": "production",
        "SECRET_KEY": "kq3W-9zP_x7LmV2bN8cR4tY6uH1jD5sA0fG",
        "VAR_DIR": str(tmp_path),
        # What production needs besides (tests/test_production_config.py has each rule).
        "DATABASE_URL": "postgresql://mailer@db.internal/mailer",
        "REDIS_URL": "redis://redis.internal:6379/0",
        "SMTP_URL": "smtp://relay.internal:25",
        "BASE_URL": "https://updates.trust.test",
        "MAIL_FROM": "Trust Matters <news@trust.test>",
    }
    with pytest.raises(ConfigError, match="EMAIL_HASH_KEY must be set"):
        load_settings(production)
    with pytest.raises(ConfigError, match="at least 32 characters"):
        load_settings({**production, "EMAIL_HASH_KEY": "short"})
    assert load_settings({**production, "EMAIL_HASH_KEY": "k" * 40}).email_hash_key == "k" * 40

    # Development makes one into var/ once, as it does the secret, and keeps using it.
    first = load_settings({"VAR_DIR": str(tmp_path / "dev")})
    assert len(first.email_hash_key) >= 32 and first.email_hash_key != first.secret_key
    assert (tmp_path / "dev" / "email_hash_key").read_text() == first.email_hash_key
    assert load_settings({"VAR_DIR": str(tmp_path / "dev")}).email_hash_key == first.email_hash_key


@pytest.fixture()
def database_at_0005(tmp_path):
    """A database of its own, migrated to 0005 by each test: a SQLite file, or a schema in the PostgreSQL test
    database."""
    with database_of_its_own(tmp_path, "upgrade_0010") as url:
        yield url


def test_the_upgrade_keys_the_hashes_already_stored_and_old_manage_links_still_work(database_at_0005, settings):
    from mailer.audience.changes import Known, refusal_reason
    from mailer.web import create_app

    url = database_at_0005
    migrate(url, "0005")
    old = Database(url)
    with old.engine.begin() as conn:
        rows = [
            (1, "Reader@example.org", "reader@example.org", _bare("reader@example.org"), "active"),
            (2, None, None, _bare("erased@example.org"), "erased"),
            (3, None, None, _bare("left-long-ago@example.org"), "unsubscribed"),
        ]
        for row in rows:
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, email_key, email_hash, status, created_at) "
                    "VALUES (:id, :email, :key, :hash, :status, CURRENT_TIMESTAMP)"
                ),
                dict(zip(("id", "email", "key", "hash", "status"), row, strict=True)),
            )
        for address, reason in (("erased@example.org", "erased"), ("bounced@example.org", "bounced")):
            conn.execute(
                text("INSERT INTO suppressions (email_hash, reason, created_at) VALUES (:h, :r, CURRENT_TIMESTAMP)"),
                {"h": _bare(address), "r": reason},
            )
        # The topics as `mailer init` seeded them then: the columns of 0005 (today's model has more).
        for position, (slug, name, description) in enumerate(SEED_TOPICS):
            conn.execute(
                text("INSERT INTO topics (id, slug, name, description, position) VALUES (:id, :s, :n, :d, :p)"),
                {"id": position + 1, "s": slug, "n": name, "d": description, "p": position},
            )
    old.dispose()

    key = settings.email_hash_key
    migrate(url, "head", email_hash_key=key)

    db = Database(url, email_hash_key=key)
    with db.sessions() as s:
        stored = dict(s.execute(select(Subscriber.id, Subscriber.email_hash)).all())
        suppressed = dict(s.execute(select(Suppression.reason, Suppression.email_hash)).all())
        assert stored == {
            1: _keyed("reader@example.org", key),
            2: _keyed("erased@example.org", key),
            3: _keyed("left-long-ago@example.org", key),
        }
        assert suppressed == {
            "erased": _keyed("erased@example.org", key),
            "bounced": _keyed("bounced@example.org", key),
        }
        # Still matched, without the address: no import brings any of them back.
        addresses = ["erased@example.org", "bounced@example.org", "left-long-ago@example.org"]
        known = Known.load(s, addresses)
        for address in addresses:
            assert refusal_reason(known, None, _keyed(address, key)), address

    # A manage link sent before the upgrade carries a piece of the bare hash; it still opens the page.
    app = create_app(settings.with_overrides(database_url=url))
    old_token = legacy_token(settings, "manage", [1, _bare("reader@example.org")[:12]])
    assert app.test_client().get(f"/manage/{old_token}").status_code == 200
    app.extensions["mailer"].db.dispose()
    db.dispose()


def test_a_database_refuses_a_key_other_than_the_one_its_hashes_were_made_with(database_at_0005, settings):
    """A trial run in development, then production on the same database with a fresh key: before, everyone
    erased or suppressed stopped being recognised and an import brought them back. Now nothing starts."""
    from mailer.schema import init_database
    from mailer.web import create_app

    url = database_at_0005
    trial, fresh = "t" * 40, "f" * 40
    init_database(url, email_hash_key=trial)
    app = create_app(settings.with_overrides(database_url=url, email_hash_key=trial))
    headers = _token(app.extensions["mailer"].db)
    client = app.test_client()
    _add(client, headers, "gone@example.org")
    assert client.delete("/api/v1/subscribers/gone@example.org", headers=headers).status_code == 204
    app.extensions["mailer"].db.dispose()

    for start in (
        lambda: init_database(url, email_hash_key=fresh),
        lambda: create_app(settings.with_overrides(database_url=url, email_hash_key=fresh)),
    ):
        with pytest.raises(ConfigError, match="EMAIL_HASH_KEY is not the key"):
            start()
    again = create_app(settings.with_overrides(database_url=url, email_hash_key=trial))  # the right key still works
    report = _import(again.test_client(), headers, "gone@example.org")
    assert report["imported"] == 0 and report["skipped"] == 1
    again.extensions["mailer"].db.dispose()
