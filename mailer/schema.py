"""Migrations (Alembic) and seed data: what `mailer init` does, idempotently."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .config import shipped
from .db import Database
from .models import SEED_TOPICS, Topic


def alembic_config(database_url: str, email_hash_key: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(shipped("migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    # Migration 0009 keys the address hashes already stored; without this it reads EMAIL_HASH_KEY from settings.
    if email_hash_key:
        cfg.attributes["email_hash_key"] = email_hash_key
    return cfg


def migrate(database_url: str, revision: str = "head", email_hash_key: str | None = None) -> None:
    """Bring the database schema up to `revision`."""
    command.upgrade(alembic_config(database_url, email_hash_key), revision)


def seed_topics(session: Session) -> int:
    """Add any seed topic that is missing (by slug); existing rows keep their edited names, and a seed topic the
    team retired stays retired. Returns how many were added. Ids are given here, as the team's new topics get
    theirs (`audience.catalogue`): the next free bit of the topic summary."""
    existing = set(session.scalars(select(Topic.slug)))
    last = session.scalar(select(func.max(Topic.id))) or 0
    added = 0
    for position, (slug, name, description) in enumerate(SEED_TOPICS):
        if slug not in existing:
            last += 1
            session.add(Topic(id=last, slug=slug, name=name, description=description, position=position))
            added += 1
    session.flush()
    return added


def init_database(database_url: str, email_hash_key: str | None = None) -> int:
    """Migrate and seed. Safe to run any number of times."""
    if database_url.startswith("sqlite:///"):
        from pathlib import Path

        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    migrate(database_url, email_hash_key=email_hash_key)
    db = Database(database_url, email_hash_key=email_hash_key)
    try:
        db.check_email_hash_key()
        with db.transaction() as session:
            return seed_topics(session)
    finally:
        db.dispose()
