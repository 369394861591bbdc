"""CSV import of subscribers whose consent was collected elsewhere (events, paper forms, old lists).

An upload is checked (its first row must name the columns) and stored in the database, a piece at a time
(`receive_import`); a Celery worker on any host then imports it (`process_import`). Rows are read with the
standard `csv` module, checked and written in batches, so memory does not grow with the file. Each row is
applied whole or not at all; bad rows are reported by spreadsheet row number (the header is row 1, a quoted
cell over several lines is one row) and the good ones kept. Re-importing the same file changes nothing. An
address that unsubscribed, bounced, complained or was erased is never brought back, and each such row says
so.

Each batch commits its rows together with the import's progress (the row reached and the counts so far), so
what the import row says was written is what was written. An import ends `finished` or `failed`, with an
audit row either way: an unexpected error fails it with the counts of the batches committed before; a worker
that dies leaves it to the sweeper (`stalled_imports`), which hands it to another worker to carry on from
the last committed row, or fails it after `MAX_ATTEMPTS`.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import secrets
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..db import Database
from ..errors import Conflict, InvalidInput
from ..inputs import parse
from ..models import AdminUser, ApiToken, Import, ImportChunk, Topic, utcnow
from ..render.content import clean_text
from .changes import Known, Origin, add, topics_wanted
from .emails import normalise_email
from .import_file import ENCODING_NAMES, EncodingSniffer, ImportFileError, read_rows, text_of
from .inputs import ImportUpload, NewSubscriber, parse_with_topics
from .profiles import ImportProgress, ImportStatus
from .segments import areas_by_slug

log = logging.getLogger(__name__)

BATCH = 500
REPORT_LIMIT = 1000  # rows listed in the report; counts are always complete
MESSAGE_MAX = 300  # characters of one row's message (they quote what was in the cell)
CHUNK = 1024 * 1024  # bytes of the file per stored piece
HEAD = 256 * 1024  # bytes read to check the first row before anything is stored
PROGRESS_SECONDS = 2.0  # at most this long between records of progress while a worker runs
MAX_ATTEMPTS = 3  # workers lost on one import before it is failed rather than handed on again
ACTIVE = ("queued", "running")


class _LostClaim(Exception):
    """Another worker took this import over (this one was presumed dead): stop without writing."""


@dataclass
class ImportReport:
    """What an import did so far: complete counts, and the first REPORT_LIMIT rows worth a look."""

    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rows: int = 0
    error_count: int = 0
    entries: list = field(default_factory=list)  # {"row", "error"} and {"row", "reason"}, in file order
    truncated: bool = False
    import_id: int | None = None
    status: str | None = None
    failure: str | None = None

    def _note(self, entry: dict) -> None:
        if len(self.entries) < REPORT_LIMIT:
            self.entries.append(entry)
        else:
            self.truncated = True

    def error(self, row: int, message: str) -> None:
        self.error_count += 1
        self._note({"row": row, "error": _bounded(message)})

    def skip(self, row: int, reason: str, *, counted: bool = True) -> None:
        """A row not imported (counted), or a note on a row that was (not counted)."""
        self.skipped += counted
        self._note({"row": row, "reason": _bounded(reason)})

    @property
    def errors(self) -> list[dict]:
        return [e for e in self.entries if "error" in e]

    @property
    def skipped_rows(self) -> list[dict]:
        return [e for e in self.entries if "reason" in e]

    def merged(self, part: ImportReport) -> ImportReport:
        """This report with a batch's added (a new report: this one stays what was committed)."""
        out = ImportReport(**{k: getattr(self, k) for k in COUNTS}, truncated=self.truncated)
        out.entries = list(self.entries)
        out.import_id = self.import_id
        for key in COUNTS:
            setattr(out, key, getattr(out, key) + getattr(part, key))
        for entry in sorted(part.entries, key=lambda e: e["row"]):  # a batch notes refusals before outcomes
            out._note(entry)
        out.truncated = out.truncated or part.truncated
        return out

    def counts(self) -> dict:
        return {k: getattr(self, k) for k in COUNTS} | {"truncated": self.truncated}

    @classmethod
    def of(cls, record: Import) -> ImportReport:
        """The report an import row holds: what its committed batches did."""
        counts = record.counts or {}
        report = cls(**{k: int(counts.get(k, 0)) for k in COUNTS}, truncated=bool(counts.get("truncated")))
        report.entries = list(record.report or [])
        report.import_id, report.status, report.failure = record.id, record.status, record.failure
        return report

    def as_dict(self) -> dict:
        return {
            "import": self.import_id,
            **self.counts(),
            "skipped_rows": self.skipped_rows,
            "errors": self.errors,
        }


COUNTS = ("imported", "updated", "unchanged", "skipped", "rows", "error_count")


def _bounded(message: str) -> str:
    """A message fit to keep and show: no control characters (PostgreSQL's JSON refuses NUL), not too long."""
    text = " ".join(clean_text(message).split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


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


# --- the stored file ---------------------------------------------------------------------------------


class _StoredFile(io.RawIOBase):
    """An import's stored file as a byte stream, a piece fetched at a time in a short read of its own."""

    def __init__(self, db: Database, import_id: int):
        self._db, self._import_id = db, import_id
        self._seq, self._piece, self._at = 0, b"", 0
        self.position = 0  # bytes handed out so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._at >= len(self._piece):
            with self._db.sessions() as session:
                data = session.scalar(
                    select(ImportChunk.data).where(
                        ImportChunk.import_id == self._import_id, ImportChunk.seq == self._seq
                    )
                )
            if data is None:
                return 0
            self._piece, self._at, self._seq = bytes(data), 0, self._seq + 1
        n = min(len(buffer), len(self._piece) - self._at)
        buffer[:n] = self._piece[self._at : self._at + n]
        self._at += n
        self.position += n
        return n


# --- checking and writing rows -------------------------------------------------------------------------


@dataclass
class _Checked:
    row: int
    data: NewSubscriber
    wanted: list  # (Topic, frequency) in display order

    @property
    def email(self) -> str:
        return self.data.email


def _check(
    row: int, cells: dict[str, str], address: str, topics: dict, areas: dict, default_source: str = ""
) -> _Checked:
    """A row as the same input an API call to add someone would send (InvalidInput naming what is wrong)."""
    shape = {
        "email": address,
        "name": cells.get("name"),
        "area": cells.get("area"),
        "audience": cells.get("audience"),
        "services": cells.get("services") or "",
        "subscriptions": [t for t in (cells.get("topics") or "").split(";") if t.strip()],
        "consent": {
            "source": cells.get("consent_source", "").strip() or default_source,
            "date": cells.get("consent_date"),
            "collected": True,
        },
    }
    data = parse_with_topics(topics, NewSubscriber, shape, areas=areas)
    return _Checked(row, data, topics_wanted(topics, data.wanted))


def _apply(session, item: _Checked, report: ImportReport, import_id: int, admin_user_id, known: Known | None) -> None:
    """One row. Every refusal happens before anything is written, so a refused row leaves no trace."""
    origin = Origin("import", admin_user_id=admin_user_id, import_id=import_id, row=item.row)
    try:
        outcome = add(session, item.data, item.wanted, origin, known)
    except InvalidInput as exc:
        report.error(item.row, exc.sentences)
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
        # The row itself was applied; this is a note, not a skipped row.
        report.skip(
            item.row, f"Not re-added to {', '.join(outcome.change.refused)}: they unsubscribed from it", counted=False
        )


# PostgreSQL's "deadlock detected" and "could not serialize": the transaction was rolled back whole and
# trying it again is the documented answer. Two imports (or an import and a person changing their
# preferences) that touch the same people in another order can meet this way.
RETRY_SQLSTATES = ("40P01", "40001")
BATCH_ATTEMPTS = 3


@dataclass
class _Progress:
    """The import as its worker holds it: what is committed, and how to commit a batch's share of it.

    A batch that writes rows commits its progress with them, so the import row never counts a row that is
    not written, nor misses one that is. A batch that wrote nothing (re-imported rows, all unchanged) has
    its progress recorded with the next commit, or within PROGRESS_SECONDS: until then a worker carrying the
    import on would read those rows again, which changes nothing. On PostgreSQL a commit with nothing
    written costs no WAL flush: recording every batch made re-importing unchanged rows about a quarter slower.
    """

    import_id: int
    token: str
    admin_user_id: int | None
    report: ImportReport  # as committed
    last_row: int  # the last row committed (the header is row 1)
    file: _StoredFile | None = None
    pending: ImportReport | None = None  # with the batches since that wrote nothing
    pending_row: int = 1
    saved_at: float = field(default_factory=time.monotonic)

    def save(self, session: Session, part: ImportReport, last_row: int, *, wrote: bool) -> tuple[ImportReport, bool]:
        """In the batch's transaction: the counts with the batch's, and whether they were recorded now."""
        merged = (self.pending or self.report).merged(part)
        if not wrote and time.monotonic() - self.saved_at < PROGRESS_SECONDS:
            return merged, False
        self.record(session, merged, last_row)
        return merged, True

    def record(self, session: Session, merged: ImportReport, last_row: int) -> None:
        """Write the progress, if this worker still holds the import (_LostClaim if not)."""
        values = {
            "counts": merged.counts(),
            "last_row": last_row,
            "bytes_read": self.file.position if self.file else 0,
            "heartbeat_at": utcnow(),
        }
        if len(merged.entries) != len(self.report.entries):
            values["report"] = merged.entries
        held = session.execute(
            update(Import)
            .where(Import.id == self.import_id, Import.claim == self.token)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if held != 1:
            raise _LostClaim

    def committed(self, merged: ImportReport, last_row: int, recorded: bool) -> None:
        if recorded:
            self.report, self.last_row, self.pending, self.saved_at = merged, last_row, None, time.monotonic()
        else:
            self.pending, self.pending_row = merged, last_row


def _apply_batch(
    db: Database, items: list[_Checked], checked: ImportReport, progress: _Progress, last_row: int
) -> None:
    """A batch in one transaction, with the import's progress: what is known about its addresses is loaded
    in a few queries, rows are applied in memory and written in one flush. If the flush fails on one row
    (someone else added one of the addresses meanwhile, or the database refuses a value), the batch is
    applied again row by row, each in a savepoint, and only that row fails. A batch that lost a deadlock is
    rolled back whole and tried again. `checked` holds the batch's rows refused before writing."""
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            merged, recorded = _write_batch(db, items, checked, progress, last_row)
        except OperationalError as exc:
            if attempt == BATCH_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in RETRY_SQLSTATES:
                raise
            continue
        progress.committed(merged, last_row, recorded)
        return


def _copy(report: ImportReport) -> ImportReport:
    return ImportReport().merged(report)


def _write_batch(
    db: Database, items: list[_Checked], checked: ImportReport, progress: _Progress, last_row: int
) -> tuple[ImportReport, bool]:
    admin_user_id, import_id = progress.admin_user_id, progress.import_id
    try:
        with db.transaction() as session:
            part = _copy(checked)
            known = Known.load(session, [item.email for item in items])
            for item in items:
                _apply(session, item, part, import_id, admin_user_id, known)
            session.flush()
            return progress.save(session, part, last_row, wrote=_wrote(part))
    except (IntegrityError, DataError):
        pass
    with db.transaction() as session:
        part = _copy(checked)
        for item in items:
            try:
                with session.begin_nested():
                    _apply(session, item, part, import_id, admin_user_id, None)
            except IntegrityError:
                part.error(item.row, "The address was added by someone else at the same moment: import it again")
            except DataError as exc:
                # The kind of error only: the database's message can quote the value, an address among them.
                log.warning(
                    "import %s row %s refused by the database: %s", import_id, item.row, type(exc.orig).__name__
                )
                part.error(item.row, "The database refused a value in this row: check it for unusual characters")
        return progress.save(session, part, last_row, wrote=_wrote(part))


def _wrote(part: ImportReport) -> bool:
    return bool(part.imported or part.updated)  # every other outcome leaves the database as it was


def _normal(address: str) -> str:
    try:
        return normalise_email(address)
    except InvalidInput:
        return address.strip()


class _Sorter:
    """Sorts a file's rows, in order, into those to write and those refused before writing. The same address
    twice in one file: the second is refused. Replayed over the rows already committed when an import is
    carried on by another worker, so duplicates are found across the two."""

    def __init__(self, topics: dict, areas: dict, consent_source: str):
        self.topics, self.areas, self.consent_source = topics, areas, consent_source
        self.seen = _SeenRows()

    def sort(self, row: int, cells: dict[str, str] | str, report: ImportReport) -> _Checked | None:
        report.rows += 1
        if isinstance(cells, str):
            report.error(row, cells)
            return None
        # Normalised once here: the duplicate check, the batch's lookup and the row all use it.
        address = _normal(cells.get("email", ""))
        key = self.seen.key(address)
        first_row = self.seen.get(key)
        if first_row is not None:
            report.error(row, f"Duplicate of row {first_row}: the same address is in the file twice")
            return None
        try:
            item = _check(row, cells, address, self.topics, self.areas, self.consent_source)
        except InvalidInput as exc:
            report.error(row, exc.sentences)
            return None  # a corrected copy of this row later in the file is welcome
        self.seen.add(key, row)
        return item


# --- the import's life: upload, run, finish or fail ----------------------------------------------------


def store_upload(
    session: Session, binary: IO[bytes], data: ImportUpload, *, channel: str, actor: Actor | None
) -> Import:
    """Check an uploaded CSV file's first row and store the file for a worker to import, with its audit row.

    ImportFileError and nothing written if the file cannot be imported at all. The file is read from the client
    (spooled) before anything is written, so a slow upload holds no lock: the session's transaction begins with
    its first write. The caller enqueues the import once this is committed (`commands.receive_import`).
    """
    if not binary.seekable():
        spool = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK)  # noqa: SIM115 - closed below
        while piece := binary.read(CHUNK):
            spool.write(piece)
        spool.seek(0)
        try:
            return store_upload(session, spool, data, channel=channel, actor=actor)
        finally:
            spool.close()
    start = binary.tell()
    _check_head(binary.read(HEAD), data.consent_source)
    binary.seek(start)
    sniffer = EncodingSniffer()
    record = Import(
        filename=data.filename,
        channel=channel,
        admin_user_id=actor.id if actor and actor.type == "user" else None,
        api_token_id=actor.id if actor and actor.type == "token" else None,
        consent_source=data.consent_source,
        status="queued",
    )
    session.add(record)
    session.flush()
    size = seq = 0
    while piece := binary.read(CHUNK):
        sniffer.feed(piece)
        session.execute(insert(ImportChunk).values(import_id=record.id, seq=seq, data=piece))
        size, seq = size + len(piece), seq + 1
    record.size, record.encoding = size, sniffer.encoding()
    audit.record(session, actor, "import.upload", record, filename=record.filename, bytes=size)
    return record


def receive_import(
    db: Database,
    binary: IO[bytes],
    *,
    channel: str,
    actor: Actor | None = None,
    filename: str | None = None,
    consent_source: str | None = None,
) -> int:
    """For scripts and tests: store a file in a unit of work of its own, queueing nothing; the import's id."""
    data = parse(ImportUpload, {"filename": filename, "consent_source": consent_source})
    with db.transaction() as session:
        return store_upload(session, binary, data, channel=channel, actor=actor).id


def _check_head(head: bytes, consent_source: str | None) -> None:
    """The file's first row names the columns it must (ImportFileError if not)."""
    if not head.strip():
        raise ImportFileError("The file is empty: the first row must name the columns")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFileError(
            "The file is saved as UTF-16 ('Unicode Text'): save it as 'CSV UTF-8' and import it again"
        )
    sniffer = EncodingSniffer()
    sniffer.feed(head)
    read_rows(text_of(io.BytesIO(head), sniffer.encoding()), consent_source)  # the first row: ImportFileError


def process_import(db: Database, import_id: int, *, lease: timedelta = timedelta(minutes=5)) -> str:
    """Import a stored file to the end, or carry on one another worker left; what became of it.

    "finished" or "failed" (with an audit row, the file deleted); "taken" when another worker holds it (its
    last commit is under `lease` old) or took it over meanwhile; "gone" when it has already ended.
    Never raises for anything a file holds; if even marking it failed fails (the database is down), the
    exception goes up and the sweeper finds the import later.
    """
    progress = _claim(db, import_id, lease)
    if not isinstance(progress, _Progress):
        return progress
    try:
        _run(db, progress)
        _finish(db, progress)
    except _LostClaim:
        log.warning("import %s was taken over by another worker at row %s", import_id, progress.last_row)
        return "taken"
    except Exception as exc:
        log.exception("import %s failed after row %s", import_id, progress.last_row)
        reason = f": {exc}" if isinstance(exc, ImportFileError) else f" by an error on our side ({type(exc).__name__})"
        _fail(db, import_id, progress.token, f"Stopped{reason}. {_what_was_written(progress.last_row)}")
        return "failed"
    return "finished"


def _claim(db: Database, import_id: int, lease: timedelta) -> _Progress | str:
    now = utcnow()
    with db.transaction() as session:
        record = session.get(Import, import_id, with_for_update=True)
        if record is None or record.status not in ACTIVE:
            return "gone"
        if record.claim and record.heartbeat_at and record.heartbeat_at > now - lease:
            return "taken"
        if record.attempts >= MAX_ATTEMPTS:
            _mark_failed(session, record, _lost_message(record))
            return "failed"
        token = secrets.token_hex(16)
        record.status, record.claim, record.heartbeat_at = "running", token, now
        record.attempts += 1
        return _Progress(import_id, token, record.admin_user_id, ImportReport.of(record), record.last_row)


def _run(db: Database, progress: _Progress) -> None:
    with db.sessions() as session:
        record = session.get(Import, progress.import_id)
        encoding, consent_source, size = record.encoding, record.consent_source, record.size
        topics = {t.slug: t for t in session.scalars(select(Topic))}
        areas = areas_by_slug(session)
        for row in (*topics.values(), *areas.values()):
            session.expunge(row)
    progress.file = _StoredFile(db, progress.import_id)
    rows = read_rows(text_of(io.BufferedReader(progress.file, 64 * 1024), encoding), consent_source)
    sorter = _Sorter(topics, areas, consent_source or "")
    resume_after, ignored = progress.last_row, ImportReport()
    checked, good, last_row = ImportReport(), [], resume_after
    for row, cells in rows:
        if row <= resume_after:
            sorter.sort(row, cells, ignored)  # committed already: only the duplicate check learns from it
            continue
        item = sorter.sort(row, cells, checked)
        if item is not None:
            good.append(item)
        last_row = row
        if checked.rows >= BATCH:
            _apply_batch(db, good, checked, progress, last_row)
            checked, good = ImportReport(), []
    if checked.rows:
        _apply_batch(db, good, checked, progress, last_row)
    if progress.file.position != size:
        raise RuntimeError(f"stored file ends at byte {progress.file.position} of {size}")


def _actor(session: Session, record: Import) -> Actor | None:
    """Who started the import: its end is recorded as theirs."""
    user = session.get(AdminUser, record.admin_user_id) if record.admin_user_id else None
    if user is not None:
        return Actor.user(user)
    token = session.get(ApiToken, record.api_token_id) if record.api_token_id else None
    if token is not None:
        return Actor.token(token)
    return None


def _end(session: Session, record: Import, status: str, failure: str | None = None) -> None:
    record.status, record.failure = status, failure
    record.finished_at, record.claim = utcnow(), None
    session.execute(delete(ImportChunk).where(ImportChunk.import_id == record.id))
    counts = record.counts or {}
    audit.record(
        session,
        _actor(session, record),
        "import.run",
        record,
        status=status,
        rows=counts.get("rows", 0),
        imported=counts.get("imported", 0),
        updated=counts.get("updated", 0),
        failure=failure,
    )


def _finish(db: Database, progress: _Progress) -> None:
    with db.transaction() as session:
        if progress.pending is not None:
            progress.record(session, progress.pending, progress.pending_row)
        record = session.get(Import, progress.import_id, with_for_update=True)
        if record.claim != progress.token:
            raise _LostClaim
        _end(session, record, "finished")


def _mark_failed(session: Session, record: Import, failure: str) -> None:
    log.warning("import %s failed: %s", record.id, failure)
    _end(session, record, "failed", failure)


def _fail(db: Database, import_id: int, token: str, failure: str) -> None:
    with db.transaction() as session:
        record = session.get(Import, import_id, with_for_update=True)
        if record is not None and record.status in ACTIVE and record.claim == token:
            _mark_failed(session, record, failure)


def _what_was_written(last_row: int) -> str:
    if last_row <= 1:
        return "Nothing from the file was written."
    return (
        f"Rows 2 to {last_row:,} were read and what this report counts was saved; nothing after row {last_row:,} "
        "was written. Import the file again to finish: rows already imported are left as they are."
    )


def _lost_message(record: Import) -> str:
    return (
        f"Stopped after {record.attempts} tries, each time without finishing (the worker running it was lost). "
        + _what_was_written(record.last_row)
    )


def stalled_imports(db: Database, lease: timedelta, now: datetime | None = None) -> list[int]:
    """Imports nobody has moved for `lease` (a worker died, or the task never reached one): each is freed
    for the next worker and its id returned to enqueue, or, after MAX_ATTEMPTS workers, marked failed."""
    now = now or utcnow()
    cutoff = now - lease
    stale = (
        Import.status.in_(ACTIVE),
        or_(Import.heartbeat_at < cutoff, and_(Import.heartbeat_at.is_(None), Import.created_at < cutoff)),
    )
    with db.sessions() as session:  # most sweeps find none: no write transaction for them
        if session.scalar(select(Import.id).where(*stale).limit(1)) is None:
            return []
    again = []
    with db.transaction() as session:
        stalled = session.scalars(select(Import).where(*stale).order_by(Import.id).with_for_update()).all()
        for record in stalled:
            if record.attempts >= MAX_ATTEMPTS:
                _mark_failed(session, record, _lost_message(record))
            else:
                # Freed, and the clock restarted so the next sweep waits a lease before trying it again.
                record.claim, record.heartbeat_at = None, now
                again.append(record.id)
    return again


def import_status(record: Import) -> ImportStatus:
    """What the API and the admin show of an import: where it is, its counts and the rows to look at."""
    report = ImportReport.of(record)
    total = record.size or 0
    read = min(record.bytes_read or 0, total)
    percent = 100 if record.status == "finished" else (100 * read // total if total else 0)
    return ImportStatus(
        id=record.id,
        status=record.status,
        filename=record.filename,
        channel=record.channel,
        created_at=record.created_at,
        finished_at=record.finished_at,
        encoding=ENCODING_NAMES.get(record.encoding, record.encoding),
        progress=ImportProgress(
            rows=report.rows, last_row=record.last_row, bytes_read=read, bytes_total=total, percent=percent
        ),
        failure=record.failure,
        import_=record.id,
        **report.counts(),
        skipped_rows=report.skipped_rows,
        errors=report.errors,
    )


def run_import(
    db: Database,
    binary: IO[bytes],
    *,
    channel: str,
    filename: str | None = None,
    actor: Actor | None = None,
    consent_source: str | None = None,
) -> ImportReport:
    """Store a file and import it in this process (benchmarks, scripts): the report of how it ended."""
    import_id = receive_import(
        db, binary, channel=channel, actor=actor, filename=filename, consent_source=consent_source
    )
    process_import(db, import_id)
    with db.sessions() as session:
        return ImportReport.of(session.get(Import, import_id))
