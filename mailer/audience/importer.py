"""CSV import of subscribers whose consent was collected elsewhere (events, paper forms, old lists).

Streams: rows are read, checked and written in batches, so memory does not grow with the file. Each row
is applied whole or not at all; bad rows are reported by spreadsheet row number (the header is row 1)
and the good ones kept. Re-importing the same file changes nothing. An address that unsubscribed,
bounced, complained or was erased is never brought back, and each such row says so.
"""

from __future__ import annotations

import csv
import hashlib
import io
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError

from .. import audit
from ..audit import Actor
from ..db import Database
from ..errors import Conflict, InvalidInput
from ..models import AdminUser, ApiToken, Import, Topic, utcnow
from .emails import normalise_email
from .people import Known, add_subscriber, clean_attributes, parse_consent_date, parse_subscriptions

COLUMNS = ("email", "name", "topics", "area", "audience", "services", "consent_source", "consent_date")
REQUIRED = ("email", "topics")  # and consent_source, unless the whole file has one (see run_import)
MAX_RECORD = 64 * 1024  # a row longer than this is reported, not read into memory
BATCH = 500
REPORT_LIMIT = 1000  # rows listed in the answer; counts are always complete


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, unknown columns): nothing was written."""


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rows: int = 0
    errors: list = field(default_factory=list)
    skipped_rows: list = field(default_factory=list)
    error_count: int = 0
    import_id: int | None = None

    def error(self, row: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < REPORT_LIMIT:
            self.errors.append({"row": row, "error": message})

    def skip(self, row: int, message: str) -> None:
        self.skipped += 1
        if len(self.skipped_rows) < REPORT_LIMIT:
            self.skipped_rows.append({"row": row, "reason": message})

    def merge(self, other: ImportReport) -> None:
        self.imported += other.imported
        self.updated += other.updated
        self.unchanged += other.unchanged
        for item in other.errors:
            self.error(item["row"], item["error"])
        for item in other.skipped_rows:
            self.skip(item["row"], item["reason"])
        self.skipped += other.skipped - len(other.skipped_rows)

    def as_dict(self) -> dict:
        return {
            "import": self.import_id,
            "rows": self.rows,
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "skipped_rows": self.skipped_rows,
            "errors": self.errors,
            "error_count": self.error_count,
            "truncated": self.error_count > len(self.errors) or self.skipped > len(self.skipped_rows),
        }


class _SeenRows:
    """The row where each address was first seen in this file, by a 64-bit hash of the address.

    An open-addressing table in two flat arrays (8 bytes of hash and 4 of row number a slot, at most half
    full): ~24 bytes a row where a dict of bytes to int took ~120, so a million-row file needs ~24 MB, not
    ~120 MB. Two addresses sharing a 64-bit hash is about a one-in-4x10^7 chance at a million rows.
    """

    def __init__(self, capacity: int = 1024):
        self._keys = array("Q", [0]) * capacity
        self._rows = array("I", [0]) * capacity
        self._used = 0

    @staticmethod
    def key(address: str) -> int:
        digest = hashlib.blake2b(address.lower().encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot

    def _slot(self, key: int) -> int:
        keys, mask = self._keys, len(self._keys) - 1
        slot = key & mask
        while keys[slot] and keys[slot] != key:
            slot = (slot + 1) & mask
        return slot

    def get(self, key: int) -> int | None:
        slot = self._slot(key)
        return self._rows[slot] if self._keys[slot] else None

    def add(self, key: int, row: int) -> None:
        if 2 * (self._used + 1) > len(self._keys):
            keys, rows = self._keys, self._rows
            self._keys = array("Q", [0]) * (2 * len(keys))
            self._rows = array("I", [0]) * (2 * len(keys))
            for old_key, old_row in zip(keys, rows, strict=True):
                if old_key:
                    slot = self._slot(old_key)
                    self._keys[slot], self._rows[slot] = old_key, old_row
        slot = self._slot(key)
        if not self._keys[slot]:
            self._used += 1
        self._keys[slot], self._rows[slot] = key, row


class _Records:
    """The records of a CSV text stream, one string each (a quoted cell may span lines), at most
    MAX_RECORD long. A record is complete at a line end where its double quotes are balanced, which holds
    for any CSV that escapes a quote by doubling it. A longer record is drained without being kept and
    stands as None, so one bad row can neither exhaust memory nor shift the rows after it."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def __iter__(self) -> Iterator[str | None]:
        parts: list[str] = []
        size, quotes, overlong = 0, 0, False
        while True:
            piece = self.stream.readline(MAX_RECORD + 1)
            if not piece:
                if parts or overlong:
                    yield None if overlong else "".join(parts)
                return
            quotes += piece.count('"')
            size += len(piece)
            if size > MAX_RECORD:
                overlong, parts = True, []
            elif not overlong:
                parts.append(piece)
            if piece.endswith("\n") and quotes % 2 == 0:
                yield None if overlong else "".join(parts)
                parts, size, quotes, overlong = [], 0, 0, False


def text_stream(binary: IO[bytes]) -> IO[str]:
    """Decode an uploaded file: UTF-8 with or without a byte order mark, any line endings."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")


def _parse(record: str) -> list[str]:
    return next(csv.reader([record]), [])


def read_rows(stream: IO[str], consent_source: str | None = None) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(spreadsheet row number, cells by column) for each record, or (row, what is wrong with it)."""
    csv.field_size_limit(MAX_RECORD)
    records = iter(_Records(stream))
    first = next(records, None)
    if first is None or not first.strip():
        raise ImportFileError("The file is empty: the first row must name the columns")
    try:
        header = _parse(first)
    except csv.Error as exc:
        raise ImportFileError(f"The first row could not be read as CSV: {exc}") from None
    names = [h.strip().lower().replace(" ", "_") for h in header]
    while names and not names[-1]:
        names.pop()  # spreadsheets often save empty columns after the last one
    unknown = [h for h in names if h not in COLUMNS]
    if unknown:
        raise ImportFileError(f"Unknown column {unknown[0]!r}: the columns are {', '.join(COLUMNS)}")
    missing = [c for c in REQUIRED if c not in names]
    if not consent_source and "consent_source" not in names:
        missing.append("consent_source")
    if missing:
        raise ImportFileError(
            f"The file needs a column called {missing[0]!r}; the first row names the columns"
            + (" (or say where consent was given for the whole file)" if missing[0] == "consent_source" else "")
        )
    if len(set(names)) != len(names):
        raise ImportFileError("A column is named twice in the first row")
    row = 1
    for record in records:
        row += 1
        if record is None:
            yield row, f"Row is longer than {MAX_RECORD // 1024} KB: no row needs that much, so it was not read"
            continue
        try:
            cells = _parse(record)
        except csv.Error as exc:
            yield row, f"Row could not be read as CSV: {exc}"
            continue
        if not cells or all(not c.strip() for c in cells):
            continue  # blank lines are not rows anyone means
        while len(cells) > len(names) and not cells[-1].strip():
            cells.pop()
        if len(cells) != len(names):
            yield row, f"Row has {len(cells)} cells but the first row names {len(names)} columns"
            continue
        if any("\ufffd" in c for c in cells):
            yield row, "Row is not valid UTF-8 text: save the file as 'CSV UTF-8' and import it again"
            continue
        yield row, dict(zip(names, cells, strict=True))


@dataclass
class _Checked:
    row: int
    email: str  # normalised where it is a valid address
    subscriptions: list
    attributes: object
    source: str
    consent_date: object


def _check(row: int, cells: dict[str, str], address: str, topics: dict, default_source: str = "") -> _Checked:
    errors: dict[str, str] = {}
    names = [t for t in (cells.get("topics") or "").split(";") if t.strip()]
    subscriptions = []
    try:
        subscriptions = parse_subscriptions(None, names, "topics", topics=topics)
    except InvalidInput as exc:
        errors.update(exc.errors)
    attributes, attr_errors = clean_attributes(
        name=cells.get("name"),
        area=cells.get("area"),
        audience=cells.get("audience"),
        services=cells.get("services") or "",
    )
    errors.update(attr_errors)
    consent_date = None
    try:
        consent_date = parse_consent_date(cells.get("consent_date"))
    except InvalidInput as exc:
        errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    return _Checked(
        row,
        address,
        subscriptions,
        attributes,
        cells.get("consent_source", "").strip() or default_source,
        consent_date,
    )


def _message(exc: InvalidInput) -> str:
    return "; ".join(exc.errors.values())


def _apply(session, item: _Checked, report: ImportReport, import_id: int, admin_user_id, known: Known | None) -> None:
    """One row. Every refusal happens before anything is written, so a refused row leaves no trace."""
    try:
        outcome = add_subscriber(
            session,
            email=item.email,
            subscriptions=item.subscriptions,
            attributes=item.attributes,
            consent_source=item.source,
            consent_date=item.consent_date,
            collected_elsewhere=True,
            channel="import",
            admin_user_id=admin_user_id,
            import_id=import_id,
            row=item.row,
            known=known,
        )
    except InvalidInput as exc:
        report.error(item.row, _message(exc))
        return
    except Conflict as exc:
        report.skip(item.row, str(exc))
        return
    if outcome.created:
        report.imported += 1
    elif outcome.change:
        report.updated += 1
    else:
        report.unchanged += 1
    if outcome.change.refused:
        report.skip(item.row, f"Not re-added to {', '.join(outcome.change.refused)}: they unsubscribed from it")
        report.skipped -= 1  # the row itself was applied; this is a note, not a skipped row


def _batches(rows: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in rows:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled back whole and
# trying it again is the documented answer. Two imports (or an import and a person changing their
# preferences) that touch the same people in another order can meet this way.
RETRY_SQLSTATES = ("40P01", "40001")
BATCH_ATTEMPTS = 3


def _apply_batch(db: Database, items: list[_Checked], report: ImportReport, import_id: int, admin_user_id) -> None:
    """A batch in one transaction: what is known about its addresses is loaded in a few queries, rows are
    applied in memory and written in one flush. If someone else added one of the addresses meanwhile (the
    flush fails on the unique address), the batch is applied again row by row. A batch that lost a deadlock
    is rolled back whole and tried again."""
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            part = _write_batch(db, items, import_id, admin_user_id)
        except OperationalError as exc:
            if attempt == BATCH_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in RETRY_SQLSTATES:
                raise
            continue
        report.merge(part)
        return


def _write_batch(db: Database, items: list[_Checked], import_id: int, admin_user_id) -> ImportReport:
    part = ImportReport()
    try:
        with db.transaction() as session:
            known = Known.load(session, [item.email for item in items])
            for item in items:
                _apply(session, item, part, import_id, admin_user_id, known)
            session.flush()
    except IntegrityError:
        part = ImportReport()
        with db.transaction() as session:
            for item in items:
                try:
                    with session.begin_nested():
                        _apply(session, item, part, import_id, admin_user_id, None)
                except IntegrityError:
                    part.error(item.row, "The address was added by someone else at the same moment: import it again")
    return part


def _normal(address: str) -> str:
    try:
        return normalise_email(address)
    except InvalidInput:
        return address.strip()


def run_import(
    db: Database,
    stream: IO[str],
    *,
    channel: str,
    filename: str | None = None,
    admin_user_id: int | None = None,
    api_token_id: int | None = None,
    consent_source: str | None = None,
) -> ImportReport:
    """Import a CSV text stream; ImportFileError (nothing written) if the file itself is unusable.

    `consent_source` applies to rows whose own consent_source cell is empty (or to a file without the column).
    """
    report = ImportReport()
    consent_source = " ".join((consent_source or "").split()) or None
    rows = read_rows(stream, consent_source)
    first = next(rows, None)  # reads the header: a bad file fails before anything is recorded
    with db.transaction() as session:
        record = Import(filename=filename, channel=channel, admin_user_id=admin_user_id, api_token_id=api_token_id)
        session.add(record)
        session.flush()
        report.import_id = record.id
    with db.sessions() as session:
        topics = {t.slug: t for t in session.scalars(select(Topic))}
        for topic in topics.values():
            session.expunge(topic)
    # The same address twice in one file: the second is reported, not applied.
    seen = _SeenRows()
    all_rows = rows if first is None else _chain(first, rows)
    try:
        for batch in _batches(all_rows, BATCH):
            good = []
            for row, cells in batch:
                report.rows += 1
                if isinstance(cells, str):
                    report.error(row, cells)
                    continue
                # Normalised once here: the duplicate check, the batch's lookup and the row all use it.
                address = _normal(cells.get("email", ""))
                key = seen.key(address)
                first_row = seen.get(key)
                if first_row is not None:
                    report.error(row, f"Duplicate of row {first_row}: the same address is in the file twice")
                    continue
                try:
                    good.append(_check(row, cells, address, topics, consent_source or ""))
                except InvalidInput as exc:
                    report.error(row, _message(exc))
                    continue  # a corrected copy of this row later in the file is welcome
                seen.add(key, row)
            if good:
                _apply_batch(db, good, report, record.id, admin_user_id)
    except OperationalError:
        _finish(db, report, "failed")
        raise
    _finish(db, report, "finished")
    return report


def _chain(first, rest):
    yield first
    yield from rest


def _finish(db: Database, report: ImportReport, status: str) -> None:
    with db.transaction() as session:
        record = session.get(Import, report.import_id)
        actor = None
        if record.admin_user_id:
            actor = Actor.user(session.get(AdminUser, record.admin_user_id))
        elif record.api_token_id:
            actor = Actor.token(session.get(ApiToken, record.api_token_id))
        audit.record(session, actor, "import.run", record, status=status, rows=report.rows, imported=report.imported)
        record.status = status
        record.finished_at = utcnow()
        record.counts = {k: v for k, v in report.as_dict().items() if isinstance(v, int) and k != "import"}
        record.report = (report.errors + report.skipped_rows)[:REPORT_LIMIT]
