"""What a process needs to do work: settings, the database and the link signer, built once per process.

The web app builds its own from the settings it was given; a Celery worker builds one from the
environment on first use (after fork, so each child gets its own connection pool).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Settings, load_settings
from .db import Database
from .links import Links


@dataclass
class Runtime:
    settings: Settings
    db: Database
    links: Links

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        """A runtime for `settings`; ConfigError if EMAIL_HASH_KEY is not the key the database was keyed with."""
        db = Database(settings.database_url, email_hash_key=settings.email_hash_key)
        db.check_email_hash_key()
        return cls(
            settings=settings,
            db=db,
            links=Links(settings.secret_key, settings.base_url, old_keys=settings.secret_key_fallbacks),
        )


_current: Runtime | None = None


def runtime() -> Runtime:
    global _current
    if _current is None:
        _current = Runtime.build(load_settings())
    return _current


def set_runtime(value: Runtime | None) -> None:
    global _current
    _current = value
