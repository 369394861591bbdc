"""Lockout per account: after FAILURES_ALLOWED failed sign-ins in WINDOW, an address is locked for LOCKED_FOR.

Counted per address as typed (its keyed hash, never the address), whether or not an account has it: a lockout
then says nothing about who has an account here, and a password guesser spread over many client addresses
(which the per-client-address limit in web/limits.py cannot see) still gets only ten tries per quarter hour
at any one account. Wrong passwords and wrong second-factor codes both count. Kept in the database, as the
sign-ins are, so every web host sees the same count and a Redis restart unlocks nobody.

Anyone can lock an account by failing on purpose; that is the price of the lock, and why it is short. The
person locked out can still reset their password by email, which also lifts the lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..audience.emails import hash_address
from ..models import SignInLockout, email_key, utcnow

FAILURES_ALLOWED = 10
WINDOW = timedelta(minutes=15)
LOCKED_FOR = timedelta(minutes=15)
# A row whose window and lock are both this long over is deleted when another failure is written.
FORGET_AFTER = timedelta(days=1)


def _key(session: Session, address: str) -> str:
    return hash_address(session, email_key(address or ""))


def locked_until(session: Session, address: str, now: datetime | None = None) -> datetime | None:
    """When the lock on `address` ends, if it is locked now."""
    now = now or utcnow()
    row = session.get(SignInLockout, _key(session, address))
    if row is not None and row.locked_until is not None and row.locked_until > now:
        return row.locked_until
    return None


def record_failure(session: Session, address: str, now: datetime | None = None) -> datetime | None:
    """Count one failed sign-in for `address`; returns when the lock ends if this failure locked it (the
    FAILURES_ALLOWED-th within WINDOW), otherwise None."""
    now = now or utcnow()
    key = _key(session, address)
    session.execute(
        delete(SignInLockout).where(
            SignInLockout.window_started_at < now - FORGET_AFTER,
            or_(SignInLockout.locked_until.is_(None), SignInLockout.locked_until < now - FORGET_AFTER),
        )
    )
    # Written if missing, then locked for update (PostgreSQL; a SQLite unit of work holds the write lock
    # already), so two failures at the same moment count as two and neither fails on the other's insert.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(SignInLockout)
        .values(address_hash=key, failures=0, window_started_at=now)
        .on_conflict_do_nothing(index_elements=["address_hash"])
    )
    row = session.get(SignInLockout, key, with_for_update=True, populate_existing=True)
    if row.window_started_at <= now - WINDOW:
        row.failures, row.window_started_at = 0, now
    row.failures += 1
    if row.failures < FAILURES_ALLOWED:
        session.flush()
        return None
    row.failures, row.window_started_at, row.locked_until = 0, now, now + LOCKED_FOR
    session.flush()
    return row.locked_until


def clear(session: Session, address: str) -> None:
    """Forget the failures of `address`: its owner has just signed in, or reset their password by email."""
    session.execute(
        update(SignInLockout)
        .where(SignInLockout.address_hash == _key(session, address))
        .values(failures=0, locked_until=None)
    )
