"""A database of its own for a migration test: a SQLite file, or a schema of the PostgreSQL test database
(TEST_DATABASE_URL), dropped afterwards. Migration tests start from an old revision, which the shared test
database (always at head) cannot be."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, text

from mailer.config import load_settings


@contextmanager
def database_of_its_own(tmp_path: Path, name: str) -> Iterator[str]:
    """The URL of an empty database named `name` (a file in tmp_path, or a PostgreSQL schema)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    url = load_settings({"DATABASE_URL": url, "SECRET_KEY": "x"}).database_url
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {name}"))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={name}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()
