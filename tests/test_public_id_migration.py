"""Migration 0008 on a database with people in it: everyone gets their own public id, nothing else changes,
the subscription summary triggers still work, and SQLite stops reusing ids."""

from __future__ import annotations

import re

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from mailer.schema import alembic_config, migrate
from support.databases import database_of_its_own

SCHEMA = "upgrade_from_0005"


@pytest.fixture()
def empty_database(tmp_path):
    with database_of_its_own(tmp_path, SCHEMA) as url:
        yield url


def _fill_at_0005(conn) -> None:
    for topic in (3, 4):
        conn.execute(
            text("INSERT INTO topics (id, slug, name, description, position) VALUES (:t, :s, 'T', 'd', :t)"),
            {"t": topic, "s": f"topic-{topic}"},
        )
    for i in range(1, 6):
        conn.execute(
            text(
                "INSERT INTO subscribers (id, email, email_key, email_hash, status, created_at, services) "
                "VALUES (:i, :e, :e, :h, 'active', CURRENT_TIMESTAMP, 0)"
            ),
            {"i": i, "e": f"p{i}@example.org", "h": f"{i:064d}"},
        )
        conn.execute(
            text(
                "INSERT INTO subscriptions (subscriber_id, topic_id, frequency, source, started_at) "
                "VALUES (:i, 3, 'weekly', 'web', CURRENT_TIMESTAMP)"
            ),
            {"i": i},
        )
        conn.execute(
            text(
                "INSERT INTO consent_events (id, subscriber_id, kind, channel, details, created_at) "
                "VALUES (:i, :i, 'subscribe_requested', 'web', '{}', CURRENT_TIMESTAMP)"
            ),
            {"i": i},
        )
        conn.execute(
            text(
                "INSERT INTO consent_events (id, subscriber_id, kind, channel, details, confirms_id, created_at) "
                "VALUES (100 + :i, :i, 'confirm', 'email', '{}', :i, CURRENT_TIMESTAMP)"
            ),
            {"i": i},
        )


def test_upgrade_from_0005_keeps_everyone_and_gives_each_their_own_public_id(empty_database):
    migrate(empty_database, "0005")
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        _fill_at_0005(conn)
        if engine.dialect.name == "postgresql":  # rows above were given explicit ids
            for table in ("subscribers", "consent_events"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 105)"))
        before = conn.execute(text("SELECT id, email, status, topic_mask, frequency_mask FROM subscribers")).all()
        events = conn.execute(text("SELECT id, subscriber_id, kind, confirms_id FROM consent_events")).all()
    migrate(empty_database, "0008")  # 0009 (keyed hashes) cannot be undone: stop before it

    with engine.begin() as conn:
        rows = conn.execute(
            text("SELECT id, email, status, topic_mask, frequency_mask, public_id FROM subscribers ORDER BY id")
        ).all()
        assert [tuple(r[:5]) for r in rows] == sorted(tuple(r) for r in before)
        public_ids = [r.public_id for r in rows]
        assert all(re.fullmatch(r"[0-9a-f]{32}", p) for p in public_ids) and len(set(public_ids)) == 5
        assert sorted(conn.execute(text("SELECT id, subscriber_id, kind, confirms_id FROM consent_events"))) == sorted(
            events
        )
        # The 0005 triggers came back: a new subscription still updates the summary.
        conn.execute(
            text(
                "INSERT INTO subscriptions (subscriber_id, topic_id, frequency, source, started_at) "
                "VALUES (5, 4, 'monthly', 'web', CURRENT_TIMESTAMP)"
            )
        )
        summary = conn.execute(text("SELECT topic_mask, frequency_mask FROM subscribers WHERE id = 5")).one()
        assert summary == (8 | 16, 2 | 4)
        # Deleting the newest person no longer frees their id for the next (SQLite reused it).
        conn.execute(text("DELETE FROM subscriptions WHERE subscriber_id = 5"))
        conn.execute(text("DELETE FROM consent_events WHERE subscriber_id = 5 AND confirms_id IS NOT NULL"))
        conn.execute(text("DELETE FROM consent_events WHERE subscriber_id = 5"))
        conn.execute(text("DELETE FROM subscribers WHERE id = 5"))
        new_id = conn.execute(
            text(
                "INSERT INTO subscribers (email, email_key, email_hash, status, created_at, services) "
                "VALUES ('new@example.org', 'new@example.org', :h, 'pending', CURRENT_TIMESTAMP, 0) RETURNING id"
            ),
            {"h": "0" * 64},
        ).scalar()
        assert new_id > 5
        # A row written by plain SQL gets a public id from the database itself.
        assert re.fullmatch(
            r"[0-9a-f]{32}",
            conn.execute(text("SELECT public_id FROM subscribers WHERE id = :i"), {"i": new_id}).scalar(),
        )
        event_id = conn.execute(
            text(
                "INSERT INTO consent_events (subscriber_id, kind, channel, details, created_at) "
                "VALUES (:i, 'subscribe_requested', 'web', '{}', CURRENT_TIMESTAMP) RETURNING id"
            ),
            {"i": new_id},
        ).scalar()
        assert event_id > 105
    engine.dispose()

    # And back down and up again.
    command.downgrade(alembic_config(empty_database), "0005")
    migrate(empty_database, "0008")
