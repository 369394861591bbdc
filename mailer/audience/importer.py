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
import csv
import hashlib
import io
import logging
import re
import secrets
import tempfile
from array import array
from collections.abc import Iterator
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
from ..models import AdminUser, ApiToken, Import, ImportChunk, Topic, utcnow
from ..render.content import clean_text
from ..spreadsheet import cell_value
from .emails import normalise_email
from .people import SOURCE_MAX, Known, add_subscriber, clean_attributes, parse_consent_date, parse_subscriptions

log = logging.getLogger(__name__)

COLUMNS = ("email", "name", "topics", "area", "audience", "services", "consent_source", "consent_date")
# Written by the export and read back without effect: when someone subscribed is history, not an input.
IGNORED_COLUMNS = ("subscribed_at", "confirmed_at")
REQUIRED = ("email", "topics")  # and consent_source, unless the whole file has one
MAX_RECORD = 64 * 1024  # characters: a longer row is reported, not read into memory
BATCH = 500
REPORT_LIMIT = 1000  # rows listed in the report; counts are always complete
MESSAGE_MAX = 300  # characters of one row's message (they quote what was in the cell)
CHUNK = 1024 * 1024  # bytes of the file per stored piece
HEAD = 256 * 1024  # bytes read to check the first row before anything is stored
MAX_ATTEMPTS = 3  # workers lost on one import before it is failed rather than handed on again
ACTIVE = ("queued", "running")


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, unknown columns): nothing was written."""


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
        for entry in part.entries:
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


# --- reading the file ----------------------------------------------------------------------------------

# Every valid UTF-8 sequence of two to four bytes.
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
ENCODING_NAMES = {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252"}


class _EncodingSniffer:
    """Which encoding an upload is in, learnt as its bytes go by.

    UTF-8 (with or without a byte order mark, which is what Excel's "CSV UTF-8" saves) when every byte is
    valid UTF-8; Windows-1252 (Excel's plain "CSV" on a UK machine) when the bytes are not UTF-8 and hold no
    UTF-8 character at all. A file with both (rows pasted together from two sources) is read as UTF-8 and
    its rows that are not are reported, rather than every accented letter of the other rows misread.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.valid = True  # every byte so far is UTF-8
        self.multibyte = False  # some character beyond ASCII was UTF-8
        self._tail = b""

    def feed(self, data: bytes) -> None:
        if self.valid:
            try:
                text = self._decoder.decode(data)
            except UnicodeDecodeError:
                self.valid = False
            else:
                self.multibyte = self.multibyte or not text.isascii()
                return
        if not self.multibyte:
            self.multibyte = _UTF8_MULTIBYTE.search(self._tail + data) is not None
            self._tail = data[-3:]

    def encoding(self) -> str:
        if self.valid:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self.valid = False
        return "utf-8-sig" if self.valid or self.multibyte else "cp1252"


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


def _text(binary: IO[bytes], encoding: str) -> IO[str]:
    # newline="": csv sees every line end as written, inside quoted cells included.
    return io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline="")


# The csv module's states, for following a record too long to hand it (see _Records._skip_record).
_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)
_UNQUOTED_STOP = re.compile(r',"|[\r\n]')  # in an unquoted cell: a quoted cell starting, or the line ending


class _Records:
    """The records of a CSV text stream as the csv module reads them, each at most MAX_RECORD characters.

    csv follows the rules spreadsheets write by: a cell that starts with a double quote runs to the quote
    that closes it, over line ends too, and a quote anywhere else (`O"Brien`) is an ordinary character.
    csv's own field_size_limit (128 KB by default) is never reached: lines are read at most MAX_RECORD + 1
    characters at a time, and a record that grows past MAX_RECORD is not given to csv any further. Its
    remaining lines are followed here with csv's own rules, so the records after it start where csv would
    start them, and csv is handed an ending for what it holds; that record comes out marked as cut.
    """

    def __init__(self, stream: IO[str]):
        self._readline = stream.readline
        self._size = 0  # characters of the current record given to csv
        self._line = 0  # lines of the file read
        self._start = 1  # the line the current record starts on
        self._cut: tuple[int, int] | None = None  # first and last line of a record that was too long
        self._reader = csv.reader(self._lines())

    def _read(self) -> str:
        piece = self._readline(MAX_RECORD + 1)
        if piece and (piece[-1] in "\r\n" or len(piece) <= MAX_RECORD):
            self._line += 1
        return piece

    def _lines(self) -> Iterator[str]:
        while piece := self._read():
            if self._size + len(piece) > MAX_RECORD:
                # Only a quoted cell carries a record over a line end, so csv is either between records or
                # inside a quoted cell now; the ending handed to it closes that cell and the record.
                inside_quotes = self._size > 0
                self._skip_record(piece, _QUOTED if inside_quotes else _START)
                self._cut = (self._start, self._line)
                yield '"\n' if inside_quotes else "\n"
            else:
                self._size += len(piece)
                yield piece

    def _skip_record(self, piece: str, state: int) -> None:
        """Read on to the end of the record `piece` is part of, starting in `state`, keeping nothing."""
        while piece:
            i, n = 0, len(piece)
            while i < n:
                if state == _QUOTED:
                    i = piece.find('"', i)
                    if i < 0:
                        break
                    state, i = _QUOTE_IN_QUOTED, i + 1
                elif state in (_START, _QUOTE_IN_QUOTED):
                    c = piece[i]
                    if c in "\r\n":
                        return
                    if c == '"':
                        state, i = (_QUOTED, i + 1)
                    elif c == ",":
                        state, i = _START, i + 1
                    else:
                        state = _UNQUOTED
                else:
                    found = _UNQUOTED_STOP.search(piece, i)
                    if found is None:
                        state = _START if piece.endswith(",") else _UNQUOTED
                        break
                    if found.group() != ',"':
                        return
                    state, i = _QUOTED, found.end()
            piece = self._read()

    def __iter__(self) -> Iterator[tuple[list[str] | csv.Error, tuple[int, int] | None]]:
        """(cells or the csv error, None or the lines of a record that was too long to read)."""
        while True:
            try:
                cells = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                cells = exc
            cut, self._cut, self._size = self._cut, None, 0
            self._start = self._line + 1
            yield cells, cut


def _header(cells: list[str], consent_source: str | None) -> list[str]:
    """The column names of the first row, or ImportFileError saying what is wrong with it."""
    names = [h.strip().lstrip("\ufeff").strip().lower().replace(" ", "_") for h in cells]
    while names and not names[-1]:
        names.pop()  # spreadsheets often save empty columns after the last one
    if not names:
        raise ImportFileError("The first row is empty: it must name the columns")
    unknown = [h for h in names if h not in COLUMNS and h not in IGNORED_COLUMNS]
    if unknown:
        raise ImportFileError(f"Unknown column {_bounded(repr(unknown[0]))}: the columns are {', '.join(COLUMNS)}")
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
    return names


def read_rows(stream: IO[str], consent_source: str | None = None) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(spreadsheet row number, cells by column) for each row after the first, or (row, what is wrong).

    The first row is read at once: ImportFileError if it does not name the columns. Cells are taken back
    from what a spreadsheet export guarded (`mailer.spreadsheet.cell_value`); blank rows are passed over.
    """
    records = iter(_Records(stream))
    first = next(records, None)
    if first is None:
        raise ImportFileError("The file is empty: the first row must name the columns")
    cells, cut = first
    if cut:
        raise ImportFileError(f"The first row is longer than {MAX_RECORD // 1024} KB: it must name the columns")
    if isinstance(cells, csv.Error):
        raise ImportFileError(f"The first row could not be read as CSV: {cells}")
    names = _header(cells, consent_source)
    return _rows(records, names)


def _rows(records, names: list[str]) -> Iterator[tuple[int, dict[str, str] | str]]:
    kept = [(i, name) for i, name in enumerate(names) if name not in IGNORED_COLUMNS]
    row = 1
    for cells, cut in records:
        row += 1
        if cut:
            first, last = cut
            where = f" (lines {first:,} to {last:,} of the file)" if last > first else ""
            yield (
                row,
                (
                    f"Row is longer than {MAX_RECORD // 1024} KB{where}: no row needs that much, so it was not read. "
                    "If a cell starts with a double quote, check that it ends with one."
                ),
            )
            continue
        if isinstance(cells, csv.Error):
            yield row, f"Row could not be read as CSV: {cells}"
            continue
        if not cells or all(not c.strip() for c in cells):
            continue  # blank lines are not rows anyone means
        while len(cells) > len(names) and not cells[-1].strip():
            cells.pop()
        if len(cells) != len(names):
            lines = (
                ""
                if not any("\n" in c or "\r" in c for c in cells)
                else (
                    ": a quoted cell in it runs over several lines, check that its closing quote is where it should be"
                )
            )
            yield row, f"Row has {len(cells)} cells but the first row names {len(names)} columns{lines}"
            continue
        if any("\ufffd" in c for c in cells):
            yield row, "Row is not valid UTF-8 text: save the file as 'CSV UTF-8' and import it again"
            continue
        yield row, {name: cell_value(cells[i]) for i, name in kept}


# --- checking and writing rows -------------------------------------------------------------------------


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
    """The import as its worker holds it: what is committed, and how to commit a batch's share of it."""

    import_id: int
    token: str
    admin_user_id: int | None
    report: ImportReport  # as committed
    last_row: int  # the last row committed (the header is row 1)
    file: _StoredFile | None = None

    def save(self, session: Session, part: ImportReport, last_row: int) -> ImportReport:
        """In the batch's transaction: the counts with the batch's, if this worker still holds the import."""
        merged = self.report.merged(part)
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
        return merged

    def committed(self, merged: ImportReport, last_row: int) -> None:
        self.report, self.last_row = merged, last_row


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
            merged = _write_batch(db, items, checked, progress, last_row)
        except OperationalError as exc:
            if attempt == BATCH_ATTEMPTS or getattr(exc.orig, "sqlstate", None) not in RETRY_SQLSTATES:
                raise
            continue
        progress.committed(merged, last_row)
        return


def _copy(report: ImportReport) -> ImportReport:
    return ImportReport().merged(report)


def _write_batch(
    db: Database, items: list[_Checked], checked: ImportReport, progress: _Progress, last_row: int
) -> ImportReport:
    admin_user_id, import_id = progress.admin_user_id, progress.import_id
    try:
        with db.transaction() as session:
            part = _copy(checked)
            known = Known.load(session, [item.email for item in items])
            for item in items:
                _apply(session, item, part, import_id, admin_user_id, known)
            session.flush()
            return progress.save(session, part, last_row)
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
                log.warning("import %s row %s refused by the database: %s", import_id, item.row, exc.orig)
                part.error(item.row, "The database refused a value in this row: check it for unusual characters")
        return progress.save(session, part, last_row)


def _normal(address: str) -> str:
    try:
        return normalise_email(address)
    except InvalidInput:
        return address.strip()


class _Sorter:
    """Sorts a file's rows, in order, into those to write and those refused before writing. The same address
    twice in one file: the second is refused. Replayed over the rows already committed when an import is
    carried on by another worker, so duplicates are found across the two."""

    def __init__(self, topics: dict, consent_source: str):
        self.topics, self.consent_source = topics, consent_source
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
            item = _check(row, cells, address, self.topics, self.consent_source)
        except InvalidInput as exc:
            report.error(row, _message(exc))
            return None  # a corrected copy of this row later in the file is welcome
        self.seen.add(key, row)
        return item


# --- the import's life: upload, run, finish or fail ----------------------------------------------------


def clean_consent_source(value: str | None) -> str | None:
    """The file-wide consent source as given (None when blank), or InvalidInput."""
    text = " ".join(clean_text(value or "").split()) or None
    if text and len(text) > SOURCE_MAX:
        raise InvalidInput({"consent_source": f"Consent source must be {SOURCE_MAX} characters or fewer"})
    return text


def _clean_filename(value: str | None) -> str | None:
    name = " ".join(clean_text(value or "").replace("\\", "/").rsplit("/", 1)[-1].split())
    return name[:255] or None


def receive_import(
    db: Database,
    binary: IO[bytes],
    *,
    channel: str,
    actor: Actor | None = None,
    filename: str | None = None,
    consent_source: str | None = None,
) -> int:
    """Check an uploaded CSV file's first row and store the file for a worker to import; the import's id.

    ImportFileError (or InvalidInput for the consent source) and nothing written if the file cannot be
    imported at all. The caller enqueues the import after this returns (the file is committed then).
    """
    consent_source = clean_consent_source(consent_source)
    if not binary.seekable():
        # Stored in one transaction, so read from the client first: a slow upload must not hold SQLite's lock.
        spool = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK)  # noqa: SIM115 - closed below
        while piece := binary.read(CHUNK):
            spool.write(piece)
        spool.seek(0)
        try:
            return receive_import(
                db, spool, channel=channel, actor=actor, filename=filename, consent_source=consent_source
            )
        finally:
            spool.close()
    head = binary.read(HEAD)
    if not head.strip():
        raise ImportFileError("The file is empty: the first row must name the columns")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ImportFileError(
            "The file is saved as UTF-16 ('Unicode Text'): save it as 'CSV UTF-8' and import it again"
        )
    sniffer = _EncodingSniffer()
    sniffer.feed(head)
    read_rows(_text(io.BytesIO(head), sniffer.encoding()), consent_source)  # the first row: ImportFileError
    binary.seek(0)
    sniffer = _EncodingSniffer()
    with db.transaction() as session:
        record = Import(
            filename=_clean_filename(filename),
            channel=channel,
            admin_user_id=actor.id if actor and actor.type == "user" else None,
            api_token_id=actor.id if actor and actor.type == "token" else None,
            consent_source=consent_source,
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
        return record.id


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
        reason = str(exc) if isinstance(exc, ImportFileError) else f"an error on our side ({type(exc).__name__})"
        _fail(db, import_id, progress.token, f"Stopped by {reason}. {_what_was_written(progress.last_row)}")
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
        for topic in topics.values():
            session.expunge(topic)
    progress.file = _StoredFile(db, progress.import_id)
    rows = read_rows(_text(io.BufferedReader(progress.file, 64 * 1024), encoding), consent_source)
    sorter = _Sorter(topics, consent_source or "")
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
    if record.admin_user_id:
        return Actor.user(session.get(AdminUser, record.admin_user_id))
    if record.api_token_id:
        token = session.get(ApiToken, record.api_token_id)
        return Actor.token({"id": token.id, "name": token.name})
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
    again = []
    with db.transaction() as session:
        stalled = session.scalars(
            select(Import)
            .where(
                Import.status.in_(ACTIVE),
                or_(Import.heartbeat_at < cutoff, and_(Import.heartbeat_at.is_(None), Import.created_at < cutoff)),
            )
            .order_by(Import.id)
            .with_for_update()
        ).all()
        for record in stalled:
            if record.attempts >= MAX_ATTEMPTS:
                _mark_failed(session, record, _lost_message(record))
            else:
                # Freed, and the clock restarted so the next sweep waits a lease before trying it again.
                record.claim, record.heartbeat_at = None, now
                again.append(record.id)
    return again


def import_status(record: Import) -> dict:
    """What the API and the admin show of an import: where it is, its counts and the rows to look at."""
    report = ImportReport.of(record)
    total = record.size or 0
    read = min(record.bytes_read or 0, total)
    percent = 100 if record.status == "finished" else (100 * read // total if total else 0)
    return {
        "id": record.id,
        "status": record.status,
        "filename": record.filename,
        "channel": record.channel,
        "created_at": record.created_at.isoformat(),
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "encoding": ENCODING_NAMES.get(record.encoding, record.encoding),
        "progress": {
            "rows": report.rows,
            "last_row": record.last_row,
            "bytes_read": read,
            "bytes_total": total,
            "percent": percent,
        },
        "failure": record.failure,
        **report.as_dict(),
    }


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
