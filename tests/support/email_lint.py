"""caniemail's data on what each mail program supports, applied to our HTML by caniemail's own linter (npm
`caniemail`, run with node by caniemail_lint.mjs beside this file), for the clients most of our readers use."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailer.config import ROOT

LINTER = Path(__file__).with_name("caniemail_lint.mjs")
PACKAGE = ROOT / "node_modules" / "caniemail" / "package.json"
NOT_INSTALLED = "npm package caniemail not installed: run `npm ci` (make setup does)"
# Gmail (web, its apps, mobile web), Outlook on Windows, Outlook.com, Apple Mail (Mac, iPhone), Yahoo Mail.
CLIENTS = ("gmail.*", "outlook.windows", "outlook.outlook-com", "apple-mail.*", "yahoo.*")


@dataclass(frozen=True)
class Finding:
    """One feature of the email that one client does not support ("none") or supports only in part."""

    client: str  # caniemail's name, e.g. "outlook.windows"
    support: str  # "none" or "partial"
    title: str  # caniemail's feature title, e.g. "border-radius"
    where: str  # the element's opening tag, or "<style> ..." for a rule of a style block
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"{self.client}: {self.title} {'not supported' if self.support == 'none' else 'partly'}{notes}\n"
            f"    at {self.where[:200]}"
        )


def lint(emails: dict[str, str]) -> dict[str, list[Finding]]:
    """Every finding for each email's HTML, in one node process. Skips the test when node or caniemail is
    missing, saying how to install it."""
    node = shutil.which("node")
    if node is None or not PACKAGE.exists():
        pytest.skip(NOT_INSTALLED if node else "node not installed: apt-get install nodejs npm")
    done = subprocess.run(
        [node, str(LINTER)],
        input=json.dumps({"clients": list(CLIENTS), "emails": emails}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    return {
        name: [
            Finding(f["client"], f["support"], f["title"], f["where"] or "", tuple(f["notes"] or ())) for f in findings
        ]
        for name, findings in result["emails"].items()
    }


def matches(client: str, patterns) -> bool:
    """Whether caniemail's client name matches one of the glob patterns ("gmail.*", "outlook.windows")."""
    return any(fnmatch.fnmatchcase(client, pattern) for pattern in patterns)
