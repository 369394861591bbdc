"""Markdown written by the comms team, made safe for HTML mail and readable as plain text."""

from __future__ import annotations

import re
import textwrap

import css_inline
import nh3
from markdown_it import MarkdownIt

# Raw HTML in Markdown is switched off; nh3 then removes anything a renderer might still let through
# (MJML passes <script> and event handlers straight to the output).
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")

ALLOWED_TAGS = {
    "a",
    "p",
    "br",
    "strong",
    "em",
    "b",
    "i",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "blockquote",
    "code",
    "pre",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "img",
}
# Only what our renderer writes: a table too wide for a phone is marked so the email shows it as records.
ALLOWED_CLASSES = {"table": {"tm-wide"}}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "th": {"align", "scope"},
    "td": {"align"},
}


# C0/C1 control characters (other than tab and newline) are invisible, invalid in XML (so MJML
# refuses the whole template) and never meant: text pasted from other programs carries them.
# Lone surrogates (they cannot be encoded) and Unicode noncharacters are refused by XML too.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def clean_text(value: str) -> str:
    """Text without control characters, surrogates or noncharacters; CRLF and CR become LF."""
    return _CONTROL.sub("", (value or "").replace("\r\n", "\n").replace("\r", "\n"))


def has_control_characters(value: str) -> bool:
    return bool(_CONTROL.search(value or ""))


# How deep lists and block quotes may nest. Beyond markdown-it's limit (20 token levels: about nine lists
# inside each other) it silently drops what is deeper; newsletters never need more than three or four.
MAX_NESTING = 6
_CONTAINER_OPENS = {"bullet_list_open", "ordered_list_open", "blockquote_open"}
_CONTAINER_CLOSES = {"bullet_list_close", "ordered_list_close", "blockquote_close"}


def nesting_depth(source: str) -> int:
    """How many lists and block quotes the deepest part of `source` sits inside (0: none)."""
    depth = deepest = 0
    for token in _md.parse(clean_text(source)):
        if token.type in _CONTAINER_OPENS:
            depth += 1
            deepest = max(deepest, depth)
        elif token.type in _CONTAINER_CLOSES:
            depth -= 1
    return deepest


def nesting_problem(source: str) -> str | None:
    """Why `source` nests too deeply to keep, or None."""
    if nesting_depth(source) > MAX_NESTING:
        return f"This text is nested too deeply: lists and quotes can go at most {MAX_NESTING} levels deep"
    return None


def markdown_to_html(source: str) -> str:
    """Markdown → sanitised HTML fragment (links keep only http(s) and mailto). Table columns keep their
    alignment as `align` (a `style` attribute would break the archive page's Content-Security-Policy)."""
    tokens = _md.parse(clean_text(source))
    for table_open, rows in _tables(tokens):
        if not fits_a_phone(rows):
            table_open.attrSet("class", "tm-wide")
    for token in tokens:
        if token.type in ("th_open", "td_open"):
            style = token.attrs.pop("style", "")
            if isinstance(style, str) and style.startswith("text-align:"):
                token.attrSet("align", style.removeprefix("text-align:"))
            if token.type == "th_open":
                token.attrSet("scope", "col")
    html = _md.renderer.render(tokens, _md.options, {})
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener",
        allowed_classes=ALLOWED_CLASSES,
    )


# How Markdown content looks in an email, written onto each element (`email_html`): Gmail's apps with a
# non-Google account, and other clients, drop <style> blocks, so a rule that lives only there is lost.
# Only what matters where <style> is gone (MJML's own p margins and the text colour of the column stay as they
# are): each rule is repeated on every element it matches, and Gmail clips an email at 102 KB. NHS colours:
# links #005eb8 on white 6.4:1 (5.8:1 on the #f0f4f5 of table headers and code), text #212b32 14.4:1, the
# footer #4c6272 on #f0f4f5 5.8:1: all above the 4.5:1 WCAG AA asks of body text.
EMAIL_CSS = """
a { color: #005eb8; }
h1, h2, h3, h4 { line-height: 1.25; margin: 0 0 12px; }
h1 { font-size: 24px; }
h2 { font-size: 22px; }
h3 { font-size: 19px; }
h4 { font-size: 17px; }
ul, ol { margin: 13px 0; padding: 0 0 0 24px; }
li > ul, li > ol { margin: 4px 0; }
blockquote { margin: 16px 0; padding: 0 0 0 16px; border-left: 4px solid #005eb8; }
code { font-family: Consolas, Menlo, monospace; font-size: 15px; background-color: #f0f4f5; }
pre { white-space: pre-wrap; margin: 13px 0; padding: 8px; background-color: #f0f4f5; }
img { max-width: 100%; height: auto; border: 0; }
hr { border: 0; border-top: 1px solid #d8dde0; margin: 16px 0; }
p.tm-record { margin: 13px 0; padding: 4px 0 4px 12px; border-left: 4px solid #d8dde0; }
table { border-collapse: collapse; width: 100%; margin: 13px 0; font-size: 15px; line-height: 1.4; }
th, td { padding: 8px; border: 1px solid #d8dde0; vertical-align: top; word-break: normal; }
th { text-align: left; background-color: #f0f4f5; }
th[align="center"], td[align="center"] { text-align: center; }
th[align="right"], td[align="right"] { text-align: right; }
"""
# Tables: a real <table> (its header cells read out with each value by screen readers), cells padded and
# bordered in the cells' own style (the one place Outlook for Windows honours padding and borders), and
# `word-break: normal`, which undoes the `break-word` MJML puts on every text column: with it, a narrow
# phone broke words in the middle ("Statu s") to squeeze columns; without it a column is as wide as its
# longest word. A table whose longest words cannot fit a phone side by side is written as records instead
# (`table_records`).


def email_html(fragment: str) -> str:
    """`fragment` (sanitised HTML from markdown_to_html) with the email's look written into style attributes,
    and each table too wide for a phone written as records (see `table_records`)."""
    if not fragment.strip():
        return fragment
    fragment = _WIDE_TABLE.sub(lambda m: table_records(m.group(0)), fragment)
    return css_inline.inline_fragment(fragment, EMAIL_CSS, load_remote_stylesheets=False, minify_css=True)


def web_tables(fragment: str) -> str:
    """`fragment` with each table in a box of its own that scrolls sideways when the table is wider than the
    page's column (a phone), so the page itself never widens. The box is a focusable region with a name: a
    keyboard user can scroll it, and a screen reader says what it is. The table inside keeps its semantics
    (`display: block` on the table itself would lose them in some browsers)."""
    return _TABLE_OPEN.sub(_SCROLL_BOX + r"\g<0>", fragment).replace("</table>", "</table></div>")


_TABLE_OPEN = re.compile(r"<table\b")
_SCROLL_BOX = '<div class="tm-table-scroll" role="region" tabindex="0" aria-label="Table (scrolls sideways)">'


# How wide the email's content is on the narrowest phone in common use: 320 px less the 24 px margins.
PHONE_CONTENT_WIDTH = 272
_WIDE_TABLE = re.compile(r'<table class="tm-wide">.*?</table>', re.S)
_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_CELL = re.compile(r"<t([hd])\b[^>]*>(.*?)</t[hd]>", re.S)


def fits_a_phone(rows: list[list[str]]) -> bool:
    return narrowest_table_width(rows) <= PHONE_CONTENT_WIDTH


def table_records(table: str) -> str:
    """A sanitised table (markdown_to_html's: header row, then body rows; cells of inline HTML only) as one
    record a row, each cell as `Header: value` on a line of its own, as the text part writes it.

    For a table that cannot fit a phone without breaking words. A wide table widened the whole email on a
    phone (a 4-column table: 466 px at 320) and a scrolling box is not scrolled by Gmail for Android, which
    would hide columns; stacking the cells needs media queries in <style>, which the clients that drop <style>
    lose. Records read the same everywhere, on a phone and in Outlook, and a screen reader keeps with each value
    the header it belongs to."""
    rows = [[cell for _kind, cell in _CELL.findall(row)] for row in _ROW.findall(table)]
    if not rows:
        return table
    header, *body = rows
    records = []
    for row in body:
        lines = []
        for n, cell in enumerate(row):
            name = header[n].strip() if n < len(header) else ""
            if not cell.strip():
                continue
            lines.append(f"<strong>{name}:</strong> {cell.strip()}" if name else cell.strip())
        if lines:
            records.append('<p class="tm-record">' + "<br>".join(lines) + "</p>")
    return "".join(records) or table


def tables_in(source: str) -> list[list[list[str]]]:
    """Each Markdown table in `source` as rows of cell texts, the header row first."""
    return [rows for _open, rows in _tables(_md.parse(clean_text(source)))]


def _tables(tokens) -> list[tuple]:
    """(the table_open token, its rows of cell texts, header row first) for each table among `tokens`."""
    tables: list[tuple] = []
    inside = False
    for token in tokens:
        if token.type == "table_open":
            tables.append((token, []))
            inside = True
        elif token.type == "table_close":
            inside = False
        elif inside and token.type == "tr_open":
            tables[-1][1].append([])
        elif inside and token.type == "inline":
            tables[-1][1][-1].append(" ".join(_inline_text(token).split()))
    return tables


def narrowest_table_width(rows: list[list[str]]) -> float:
    """Roughly how many CSS pixels wide `rows` must be in the email, words unbroken: each column as wide as
    its longest word plus its 16px padding and a border. A character is taken as 8 px, a little over the ~7.5 of
    15px Arial, to err on the side of records (harmless) over a table that widens the email: measured in
    Chromium, tables of 272, 301 and 388 px are estimated 267, 339 and 411."""
    columns = max((len(row) for row in rows), default=0)
    longest = [0] * columns
    for row in rows:
        for n, cell in enumerate(row):
            longest[n] = max([longest[n], *(len(word) for word in cell.split())])
    return sum(8 * chars + 17 for chars in longest)


def markdown_to_text(source: str, width: int = 76) -> str:
    """Markdown → plain text for the text/plain part, read in a plain-text client or by a screen reader.

    Links become `label (url)`; lists keep their bullets and numbers; headings are underlined (`===` for the
    top two levels, `---` below); quotes keep `> ` on every line; code is indented; emphasis is dropped (a
    screen reader would read out `*`). A table becomes one record per row, each cell as `Header: value`:
    columns aligned with spaces fall apart in the proportional fonts most mail apps show plain text in, and
    a screen reader reading a row of them loses which header each value belongs to."""
    return _PlainText(width).render(_md.parse(clean_text(source)))


class _PlainText:
    """Walks markdown-it's tokens, writing lines with the prefix of the quotes and lists they sit in."""

    def __init__(self, width: int):
        self.width = width
        self.lines: list[str] = []
        self.quotes = 0
        self.indents: list[int] = []  # how far each enclosing list item's content is indented
        self.lists: list[list] = []  # each: [ordered, next number, tight]
        self.marker = ""  # the bullet or number waiting for the first line of a list item
        self.table: list[list[str]] | None = None

    def render(self, tokens) -> str:
        handlers = self.HANDLERS
        for i, tok in enumerate(tokens):
            handler = handlers.get(tok.type)
            if handler is not None:
                handler(self, tokens, i)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(self.lines)).strip("\n") + "\n"

    # One method per kind of token, each given every token and the index of its own: a list looks ahead to
    # its first paragraph (is it tight?), a heading's text looks back at its heading_open (which level?).

    def list_open(self, tokens, i: int) -> None:
        if not (self.lists and self.lists[-1][2]):
            self.gap()
        tight = next((t.hidden for t in tokens[i:] if t.type == "paragraph_open"), True)
        self.lists.append([tokens[i].type == "ordered_list_open", int(tokens[i].attrGet("start") or 1), tight])

    def list_close(self, tokens, i: int) -> None:
        self.lists.pop()

    def list_item_open(self, tokens, i: int) -> None:
        ordered, number, tight = self.lists[-1]
        if not tight:
            self.gap()
        self.marker = f"{number}. " if ordered else "* "
        self.lists[-1][1] += 1
        self.indents.append(len(self.marker))

    def list_item_close(self, tokens, i: int) -> None:
        self.indents.pop()

    def blockquote_open(self, tokens, i: int) -> None:
        self.gap()
        self.quotes += 1

    def blockquote_close(self, tokens, i: int) -> None:
        self.quotes -= 1

    def paragraph_open(self, tokens, i: int) -> None:
        if not tokens[i].hidden and not self.marker:
            self.gap()

    def heading_open(self, tokens, i: int) -> None:
        self.gap()

    def inline(self, tokens, i: int) -> None:
        tok = tokens[i]
        if self.table is not None:
            self.table[-1].append(" ".join(_inline_text(tok).split()))
        elif i and tokens[i - 1].type == "heading_open":
            text = " ".join(_inline_text(tok).split())
            self.write([text, ("=" if tokens[i - 1].tag in ("h1", "h2") else "-") * len(text)])
        else:
            self.write(self.wrap(_inline_text(tok)))

    def code(self, tokens, i: int) -> None:
        if not self.marker:
            self.gap()
        self.write(["    " + line if line else "" for line in tokens[i].content.rstrip("\n").split("\n")])

    def hr(self, tokens, i: int) -> None:
        self.gap()
        self.write(["-" * 20])

    def table_open(self, tokens, i: int) -> None:
        self.gap()
        self.table = []

    def tr_open(self, tokens, i: int) -> None:
        self.table.append([])

    def table_close(self, tokens, i: int) -> None:
        self.write_table(self.table)
        self.table = None

    HANDLERS = {
        "bullet_list_open": list_open,
        "ordered_list_open": list_open,
        "bullet_list_close": list_close,
        "ordered_list_close": list_close,
        "list_item_open": list_item_open,
        "list_item_close": list_item_close,
        "blockquote_open": blockquote_open,
        "blockquote_close": blockquote_close,
        "paragraph_open": paragraph_open,
        "heading_open": heading_open,
        "inline": inline,
        "fence": code,
        "code_block": code,
        "hr": hr,
        "table_open": table_open,
        "tr_open": tr_open,
        "table_close": table_close,
    }  # any other token (closing paragraphs and headings, cells, ...) writes nothing

    def prefix(self) -> str:
        return "> " * self.quotes

    def gap(self) -> None:
        """One blank line (inside a quote, a bare `>`) before the next block, unless there is one already."""
        if self.lines and self.lines[-1].strip(" >"):
            self.lines.append(self.prefix().rstrip())

    def wrap(self, text: str, subsequent: str = "") -> list[str]:
        room = max(self.width - len(self.prefix()) - sum(self.indents), 20) if self.width else 0
        lines: list[str] = []
        for part in text.split("\n"):  # hard line breaks stay
            if not room:
                lines.append(part)
                continue
            lines.extend(
                textwrap.wrap(part, room, subsequent_indent=subsequent, break_long_words=False, break_on_hyphens=False)
                or [""]
            )
        return lines

    def write(self, lines: list[str]) -> None:
        for line in lines:
            lead = " " * (sum(self.indents) - len(self.marker)) + self.marker
            self.marker = ""
            self.lines.append((self.prefix() + lead + line).rstrip() if line else self.prefix().rstrip())

    def write_table(self, rows: list[list[str]]) -> None:
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        for n, row in enumerate(body):
            if n:
                self.gap()
            record: list[str] = []
            for column, value in enumerate(row):
                name = header[column] if column < len(header) else ""
                record.extend(self.wrap(f"{name}: {value}" if name else value, subsequent="  "))
            self.write(record)


def _inline_text(token) -> str:
    parts: list[str] = []
    href_stack: list[str] = []
    for child in token.children or []:
        if child.type == "text" or child.type == "code_inline":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" " if child.type == "softbreak" else "\n")
        elif child.type == "link_open":
            href_stack.append(child.attrGet("href") or "")
            parts.append("\x00")  # marks where the label starts
        elif child.type == "link_close":
            href = href_stack.pop()
            start = len(parts) - 1 - parts[::-1].index("\x00")
            label = "".join(parts[start + 1 :])
            del parts[start:]
            parts.append(
                label if label == href or href.startswith("mailto:") and label in href else f"{label} ({href})"
            )
        elif child.type == "image":
            alt = child.content or child.attrGet("alt") or ""
            if alt:
                parts.append(f"[Image: {alt}]")
    return "".join(parts)
