"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailer.models import Base


def test_migrations_match_the_models(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_on_sqlite_ids_are_never_reused_and_the_summary_triggers_exist_at_head(db):
    """What migrations 0005 and 0008 set up, which a later table rebuild on SQLite could silently undo."""
    import pytest
    from sqlalchemy import text

    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL's sequences never reuse ids; its triggers are checked by every test's summary check")
    with db.engine.connect() as conn:
        tables = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
        triggers = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
    for table in ("subscribers", "consent_events"):
        assert "AUTOINCREMENT" in tables[table].upper(), f"{table} lost AUTOINCREMENT: deleted rows' ids come back"
    summary = {"subscriptions_summary_insert", "subscriptions_summary_delete", "subscriptions_summary_update"}
    assert summary <= triggers, f"the 0005 summary triggers are gone: {sorted(summary - triggers)}"
