"""Reading an uploaded CSV file: which encoding it is in, its records as the csv module reads them, its rows.

Nothing here touches the database: `read_rows` turns a text stream into (spreadsheet row number, cells by
column) or (row number, what is wrong with the row), and raises ImportFileError when the first row does not
name the columns. The importer (`audience.importer`) decides what to do with each row.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import IO

from ..spreadsheet import cell_value

COLUMNS = ("email", "name", "topics", "area", "audience", "services", "consent_source", "consent_date")
# Written by the export and read back without effect: when someone subscribed is history, not an input.
IGNORED_COLUMNS = ("subscribed_at", "confirmed_at")
REQUIRED = ("email", "topics")  # and consent_source, unless the whole file has one
MAX_RECORD = 64 * 1024  # characters: a longer row is reported, not read into memory


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, unknown columns): nothing was written."""


# Every valid UTF-8 sequence of two to four bytes.
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
ENCODING_NAMES = {"utf-8-sig": "UTF-8", "cp1252": "Windows-1252"}


class EncodingSniffer:
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


def text_of(binary: IO[bytes], encoding: str) -> IO[str]:
    """The file's text, decoded; a byte that is not text in `encoding` becomes U+FFFD (its row is reported)."""
    # newline="": csv sees every line end as written, inside quoted cells included.
    return io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline="")


# The csv module's states, for following a record too long to hand it (see _Records._skip_record), and
# _ENDED: the record's line ended.
_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED, _ENDED = range(5)
_UNQUOTED_STOP = re.compile(r',"|[\r\n]')  # in an unquoted cell: a quoted cell starting, or the line ending


def _in_quoted(piece: str, i: int) -> tuple[int, int]:
    """Inside a quoted cell: on to the next double quote (closing the cell, or the first of a doubled one)."""
    i = piece.find('"', i)
    return (_QUOTED, len(piece)) if i < 0 else (_QUOTE_IN_QUOTED, i + 1)


def _between(piece: str, i: int) -> tuple[int, int]:
    """At the start of a cell, or just after a quote in a quoted cell: one character decides what comes next."""
    c = piece[i]
    if c in "\r\n":
        return _ENDED, i
    if c == '"':
        return _QUOTED, i + 1
    if c == ",":
        return _START, i + 1
    return _UNQUOTED, i


def _in_unquoted(piece: str, i: int) -> tuple[int, int]:
    """Inside an unquoted cell (a quote in it is an ordinary character): on to a quoted cell or the line's end."""
    found = _UNQUOTED_STOP.search(piece, i)
    if found is None:
        return (_START if piece.endswith(",") else _UNQUOTED), len(piece)
    if found.group() != ',"':
        return _ENDED, i
    return _QUOTED, found.end()


_STEPS = {_START: _between, _UNQUOTED: _in_unquoted, _QUOTED: _in_quoted, _QUOTE_IN_QUOTED: _between}


def _state_after(piece: str, state: int) -> int:
    """The csv state at the end of `piece`, read from `state`; _ENDED if the record ends in it."""
    i, n = 0, len(piece)
    while i < n and state != _ENDED:
        state, i = _STEPS[state](piece, i)
    return state


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
        while piece and (state := _state_after(piece, state)) != _ENDED:
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
        raise ImportFileError(f"Unknown column {unknown[0][:60]!r}: the columns are {', '.join(COLUMNS)}")
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
