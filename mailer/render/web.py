"""The web version of an issue's content, for its archive page: rendered once when the send starts, then kept."""

from __future__ import annotations

from functools import lru_cache

import jinja2

from ..config import shipped
from .content import web_tables

TEMPLATES = shipped("templates") / "web"


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["web_tables"] = web_tables
    return env


def issue_page_html(blocks: list) -> str:
    """The rendered blocks (compose.blocks.Rendered: already safe values) as the archive page's HTML."""
    return _env().get_template("_issue_blocks.html").render(blocks=blocks).strip() + "\n"
