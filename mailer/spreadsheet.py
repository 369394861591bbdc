"""CSV files as people open them: in a spreadsheet program, which runs formulas and guesses encodings.

Every CSV the mailer writes goes through `SpreadsheetCsv`: it starts with a UTF-8 byte order mark (without
one, Excel reads UTF-8 as Windows-1252 and shows "SiÃ¢n" for "Siân") and neutralises every cell that a
spreadsheet would take for a formula (a cell starting `=`, `+`, `-`, `@`, tab or CR can run commands:
"CSV injection"). Imports read cells back with `cell_value`, the exact inverse, so an export imported again
is the same data.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

BOM = "\ufeff"
FORMULA_STARTS = frozenset("=+-@\t\r")


def _looks_like_formula(text: str) -> bool:
    # Apostrophes in front count too, so that guarding is reversible: "'=x" is written "''=x".
    return text.lstrip("'")[:1] in FORMULA_STARTS


def spreadsheet_cell(value) -> str:
    """A cell spreadsheet programs show as text: one that would start a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if _looks_like_formula(text) else text


def cell_value(cell: str) -> str:
    """What `spreadsheet_cell` was given: the guarding apostrophe, if any, removed."""
    if cell[:1] == "'" and _looks_like_formula(cell[1:]):
        return cell[1:]
    return cell


class SpreadsheetCsv:
    """CSV text written a piece at a time: a byte order mark first, then rows of neutralised cells."""

    def __init__(self, header: Iterable[str]):
        self._buffer = io.StringIO()
        self._buffer.write(BOM)
        self._writer = csv.writer(self._buffer)  # CRLF line ends and minimal quoting, as Excel writes
        self.row(header)

    def row(self, cells: Iterable) -> None:
        self._writer.writerow([spreadsheet_cell(cell) for cell in cells])

    def take(self) -> str:
        """The text written since the last take."""
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text
