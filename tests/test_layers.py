"""The shape of the code, held by reading it: views run no queries of their own, and the API is described.

Adapters (mailer/web/**) parse, call one command or named read of a room, and render; what they show comes from
the room. Read with Python's own parser (not a pattern over lines), so a query written across lines, or through a
session under another name (`reads.get(AdminUser, …)`), is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = sorted((ROOT / "mailer" / "web").rglob("*.py"))
QUERY_METHODS = {"execute", "scalar", "scalars", "query", "exec_driver_sql"}
# Typing only: a view may name the Session type it passes on to a room.
TYPE_ONLY = {("sqlalchemy.orm", "Session")}


def _model_names() -> set[str]:
    import mailer.models

    return {name for name in dir(mailer.models) if isinstance(getattr(mailer.models, name), type)}


def queries_in(source: str, models: set[str]) -> list[str]:
    """Each place in `source` that queries the database itself, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            found += [
                f"{node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if (node.module, alias.name) not in TYPE_ONLY
            ]
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in QUERY_METHODS or name in {"select", "with_for_update"}:
                found.append(f"{node.lineno}: {name}(…)")
            elif name == "get" and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in models:
                found.append(f"{node.lineno}: get({node.args[0].id}, …)")
    return found


@pytest.mark.parametrize("path", WEB, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_view_runs_a_query_of_its_own(path):
    found = queries_in(path.read_text(), _model_names())
    assert found == [], f"{path.relative_to(ROOT)} queries the database: name a read in its room instead\n{found}"


@pytest.mark.parametrize(
    "source",
    [
        "rows = db_session().scalars(select(Topic))",
        "user = reads.get(AdminUser, row.user_id)",
        "s.execute(\n    text('SELECT 1')\n)",
        "from sqlalchemy import select",
        "import sqlalchemy",
    ],
)
def test_the_check_finds_a_query_however_it_is_written(source):
    assert queries_in(source, {"Topic", "AdminUser"})


def test_the_check_leaves_alone_what_is_not_a_query():
    source = "from sqlalchemy.orm import Session\nvalue = request.args.get('next')\nform.get('email', '')"
    assert queries_in(source, {"Topic"}) == []
