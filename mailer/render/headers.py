"""Mail headers written by the project itself: nothing a person typed is ever parsed as header structure.

Python's email package parses every header value it is given. An RFC 2047 encoded-word in a subject
(`=?utf-8?q?Hi=0D=0ABcc:_evil@evil.example?=`) is decoded, and on the Python this project runs (3.11.7) the
decoded CR LF is then written out as a real line break: a `Bcc:` header, or a blank line that ends the
headers and replaces the body. So values from people are checked here *after* decoding encoded-words
(`breaks_header`, used by the input models to refuse them with a message) and the headers are encoded here,
not by `email.message`:

- printable ASCII that does not look like an encoded-word is written as it is, folded at spaces;
- anything else (non-ASCII text, or text containing `=?`) becomes UTF-8 encoded-words of our own, cut on
  character boundaries and folded so no line passes 76 characters. A mail client decodes them back to exactly
  the text that was given: an encoded-word the editor typed arrives as the literal text they typed.

The encoder is also the last line of defence: control characters and line breaks in unstructured text are
turned into spaces, and an address that could carry structure is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets

from .content import clean_text

# An encoded-word as lenient decoders find it: anywhere in the text, any charset, any payload up to `?=`.
ENCODED_WORD = re.compile(r"=\?([^?]*)\?([bBqQ])\?([^?]*)\?=")
# What must never reach a header line once decoded: C0 and C1 controls (CR and LF among them), DEL and the
# Unicode line and paragraph separators (str.splitlines and some clients break lines at them). Tab is spacing.
_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Characters left as they are inside a Q-encoded word: the set RFC 2047 (5.3) allows even in a phrase.
_Q_LITERAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
# RFC 5322 atext: a display name made only of these (and spaces) needs no quoting.
_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~ ")
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")
_DOT_ATOM = re.compile(_LOCAL)
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")

LINE = 78  # RFC 5322's recommended line length
ENCODED_LINE = 76  # RFC 2047: a line holding an encoded-word
ENCODED_WORD_MAX = 75


class UnsafeHeader(ValueError):
    """A value that would add structure to a header (a line break, an encoded-word in an address)."""


# --- checking what people typed -------------------------------------------------------------------------


def _word_bytes(match: re.Match) -> bytes | None:
    kind, payload = match.group(2).lower(), match.group(3)
    try:
        if kind == "q":
            return binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None


def _word_text(match: re.Match) -> str:
    data = _word_bytes(match)
    if data is None:
        return match.group(0)
    try:
        return data.decode(match.group(1).partition("*")[0], "replace")
    except (LookupError, ValueError):  # a charset we do not know: its bytes as Latin-1
        return data.decode("latin-1")


def decoded(value: str) -> str:
    """`value` with its encoded-words decoded, as leniently as any mail client might."""
    return ENCODED_WORD.sub(_word_text, value)


_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def breaks_header(value: str) -> bool:
    """True if `value`, as typed or once its encoded-words are decoded (three levels deep, in any charset
    a client might know, or as raw bytes for one it might not), holds a line break or control character."""
    for _ in range(3):
        if _BREAKING.search(value):
            return True
        words = list(ENCODED_WORD.finditer(value))
        if not words:
            return False
        if any(_CONTROL_BYTES.search(_word_bytes(w) or b"") for w in words):
            return True
        value = decoded(value)
    return bool(_BREAKING.search(value))


def has_encoded_word(value: str) -> bool:
    return ENCODED_WORD.search(value) is not None


def header_problem(value: str) -> str | None:
    """Why `value` cannot go into a header, as the end of a sentence for whoever typed it; None if it can."""
    if not breaks_header(value):
        return None
    if has_encoded_word(value):  # what mail programs would decode into a line break
        return "contains encoded text (=?…?=) that hides a line break: type it as it should read"
    return "contains a line break (or a line or paragraph separator): make it one line"


# --- encoding -------------------------------------------------------------------------------------------


def _one_line(value: str) -> str:
    # Neutralise, never refuse: a stored value reaching here unchecked still makes one harmless line.
    return " ".join(_BREAKING.sub(" ", clean_text(value)).split())


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable() and "=?" not in text


def _q_piece(char: str) -> str:
    if char in _Q_LITERAL:
        return char
    if char == " ":
        return "_"
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def _encode(kind: str, chars: list[str]) -> str:
    if kind == "q":
        payload = "".join(_q_piece(c) for c in chars)
    else:
        payload = base64.b64encode("".join(chars).encode("utf-8")).decode("ascii")
    return f"=?utf-8?{kind}?{payload}?="


def _words(text: str, first_max: int) -> list[str]:
    """`text` as UTF-8 encoded-words (Q or B, whichever is shorter), each holding whole characters only."""
    candidates = []
    for kind in ("q", "b"):
        chunks: list[list[str]] = [[]]
        size, limit = 0, first_max - len("=?utf-8?q??=")  # payload room in the first word
        for char in text:
            # Q grows by each character's escape; B by whole 4-character groups per 3 bytes.
            grown = size + (len(_q_piece(char)) if kind == "q" else len(char.encode("utf-8")))
            fits = grown <= limit if kind == "q" else -(-grown // 3) * 4 <= limit
            if chunks[-1] and not fits:
                chunks.append([])
                size, limit = 0, ENCODED_WORD_MAX - len("=?utf-8?q??=")
                grown = len(_q_piece(char)) if kind == "q" else len(char.encode("utf-8"))
            chunks[-1].append(char)
            size = grown
        candidates.append([_encode(kind, chunk) for chunk in chunks if chunk])
    q, b = candidates
    return q if sum(map(len, q)) <= sum(map(len, b)) else b


def _fold(name: str, tokens: list[str]) -> bytes:
    """`Name: tokens…` CRLF, with a line break (then a space) before a token that would make its line too
    long: 78 characters, or 76 for a line holding an encoded-word (RFC 2047)."""
    lines, line = [], f"{name}:"
    for token in tokens:
        candidate = f"{line} {token}"
        limit = ENCODED_LINE if "=?" in candidate else LINE
        if len(candidate) > limit and line != f"{name}:":
            lines.append(line)
            candidate = f" {token}"
        line = candidate
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _check_name(name: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise UnsafeHeader(f"not a header name: {name!r}")


def unstructured(name: str, value: str) -> bytes:
    """The header line(s) for free text such as a subject; a decoder gives back `value` as one line
    (runs of whitespace as one space, control characters dropped)."""
    _check_name(name)
    text = _one_line(value)
    words = text.split(" ") if text else []
    if _plain(text) and all(len(w) <= LINE - len(name) - 2 for w in words):
        return _fold(name, words)
    return _fold(name, _words(text, ENCODED_LINE - len(name) - 2))


def check_address(address: str) -> str:
    """`address` if it is a plain ASCII addr-spec that carries no header structure; UnsafeHeader otherwise."""
    if not _ADDRESS.fullmatch(address) or "=?" in address:
        raise UnsafeHeader(f"not an address we can write in a header: {address!r}")
    return address


# The specials that change how an address header parses, and look-alikes that do not.
DECODED_LOOKALIKES = {
    "<": "\u2039",
    ">": "\u203a",
    '"': "\u201d",
    ",": "\u201a",
    "@": "\uff20",
    ":": "\u2236",
    ";": "\uff1b",
    "(": "\uff08",
    ")": "\uff09",
    "[": "\uff3b",
    "]": "\uff3d",
}
_DECODED_SAFE = str.maketrans(DECODED_LOOKALIKES)


def _phrase(display: str, first_max: int, *, lookalikes: bool = False) -> list[str]:
    """A display name as phrase tokens: atoms as they are, a quoted-string, or encoded-words."""
    text = _one_line(display)
    if not text:
        return []
    if _plain(text) and all(c in _ATEXT for c in text) and len(text) <= first_max:
        return text.split(" ")
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if _plain(text) and len(quoted) <= first_max:
        return [quoted]
    # List-Id (`lookalikes`): some readers decode encoded-words before they parse the header (Python's
    # policy.default, then parseaddr), so a `<`, `>`, `"` or `,` inside one would be read as the address, a
    # quote or a second address: `Café <2027>` gave list id `2027`. Only here (the quoted-string above keeps
    # them exactly) such characters become look-alikes (‹ › ” ‚ …) that parse as text.
    if lookalikes:
        text = text.translate(_DECODED_SAFE)
    # Plain words stay atoms and each run of other words becomes encoded-words, so the space next to an atom
    # is ordinary whitespace to every decoder. (Python's parser puts a space between two encoded-words in a
    # phrase, where RFC 2047 and mail clients join them; keeping runs together makes that rare.)
    tokens: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if _plain(word) and all(c in _ATEXT for c in word):
            if run:
                tokens += _words(" ".join(run), ENCODED_WORD_MAX if tokens else first_max)
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens += _words(" ".join(run), ENCODED_WORD_MAX if tokens else first_max)
    return tokens


def mailbox(name: str, display: str | None, address: str) -> bytes:
    """An address header (From, Reply-To): the display name encoded as a phrase, then the address."""
    _check_name(name)
    tokens = _phrase(display or "", ENCODED_LINE - len(name) - 2)
    return _fold(name, [*tokens, f"<{check_address(address)}>"] if tokens else [check_address(address)])


def list_id(label: str, identifier: str) -> bytes:
    """RFC 2919 `List-Id: label <id>`: the label encoded as a phrase, the id a plain dot-atom."""
    if not _DOT_ATOM.fullmatch(identifier) or "=?" in identifier:
        raise UnsafeHeader(f"not a list id: {identifier!r}")
    # The label only describes the list, so it may lose a bracket to a look-alike (see _phrase); an address's
    # display name may not, and Python's parser reads those right.
    phrase = _phrase(label, ENCODED_LINE - len("List-Id: "), lookalikes=True)
    return _fold("List-Id", [*phrase, f"<{identifier}>"])


def parse_mailbox(value: str) -> tuple[str, str]:
    """(display name, address) from a setting written `Name <address>` or `address`; ValueError says why not.

    The name is taken as written (UTF-8 is fine); an encoded-word in it is refused rather than decoded, so
    what the setting says is what recipients see."""
    value = (value or "").strip()
    if _BREAKING.search(value):
        raise ValueError("must be one line with no control characters")
    if has_encoded_word(value):
        raise ValueError("must not contain =?…?= encoded text: write the name as it should appear")
    match = re.fullmatch(r"(?:(?P<name>[^<>]*?)\s*<(?P<angle>[^<>]*)>|(?P<bare>[^<>\s]+))", value)
    if not match:
        raise ValueError("must be an address, or a name and an address like: Trust Matters <news@example.org>")
    display = (match.group("name") or "").strip()
    if len(display) >= 2 and display[0] == display[-1] == '"':
        display = re.sub(r"\\(.)", r"\1", display[1:-1])
    address = (match.group("angle") or match.group("bare") or "").strip()
    try:
        check_address(address)
    except UnsafeHeader as exc:
        raise ValueError(f"has an address that is not valid: {address!r}") from exc
    return display, address


# --- identifiers we write -------------------------------------------------------------------------------------


def message_id_for_a_test(issue_id: int, domain: str) -> str:
    """A test's Message-ID: new for every test, so the team's mail programs never take two tests for one."""
    return f"test-{issue_id}-{secrets.token_hex(6)}@{domain}"
