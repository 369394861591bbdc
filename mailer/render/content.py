"""Markdown written by the comms team, made safe for HTML mail and readable as plain text."""

from __future__ import annotations

import re
import textwrap

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
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "th": {"align"},
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
    """Markdown → sanitised HTML fragment (links keep only http(s) and mailto)."""
    html = _md.render(clean_text(source))
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener",
    )


def markdown_to_text(source: str, width: int = 76) -> str:
    """Markdown → plain text for the text/plain part: links become `label (url)`, lists keep bullets."""
    tokens = _md.parse(clean_text(source))
    out: list[str] = []
    list_stack: list[list] = []  # each: [ordered, counter]
    pending_prefix = ""
    for i, tok in enumerate(tokens):
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            list_stack.append([tok.type == "ordered_list_open", int(tok.attrGet("start") or 1)])
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
            if not list_stack:
                out.append("")
        elif tok.type == "list_item_open":
            ordered, counter = list_stack[-1]
            pending_prefix = f"{counter}. " if ordered else "* "
            if ordered:
                list_stack[-1][1] += 1
        elif tok.type == "hr":
            out.extend(["-" * 20, ""])
        elif tok.type == "inline":
            text = _inline_text(tok)
            block = tokens[i - 1].type if i else ""
            indent = "  " * max(len(list_stack) - 1, 0)
            if block == "heading_open":
                out.extend([text.upper() if tokens[i - 1].tag in ("h1", "h2") else text, ""])
            elif pending_prefix:
                out.append(
                    textwrap.fill(
                        text,
                        width,
                        initial_indent=indent + pending_prefix,
                        subsequent_indent=indent + " " * len(pending_prefix),
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
                pending_prefix = ""
            else:
                out.append(
                    textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False) if width else text
                )
                if not list_stack:
                    out.append("")
        elif tok.type in ("fence", "code_block"):
            out.extend([tok.content.rstrip("\n"), ""])
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


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
                parts.append(f"[{alt}]")
    return "".join(parts)
