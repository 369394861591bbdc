"""Debian's SpamAssassin on whole messages, local tests only: what a receiving server's filter thinks of our mail.

All messages go through one `spamassassin` process (it reads each file named on its command line in turn), so
the rules are loaded once: about a second for every kind of email together.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

NOT_INSTALLED = "Debian's SpamAssassin not installed: apt-get install spamassassin"
_REPORT = re.compile(r"^Content analysis details:\s+\((-?[\d.]+) points, [\d.]+ required\)\n", re.MULTILINE)
_RULE = re.compile(r"^\s*(-?[\d.]+)\s+([A-Z0-9_]+)\s+(.*)$")


@dataclass
class SpamReport:
    score: float
    rules: list[tuple[float, str, str]]  # (points, rule, description) as SpamAssassin lists them

    def hits(self) -> str:
        return "\n".join(f"{points:5.1f} {rule:28} {description}" for points, rule, description in self.rules)


def score_messages(messages: dict[str, bytes]) -> dict[str, SpamReport]:
    """SpamAssassin's verdict on each message (bytes as an SMTP server stores them), network tests off.

    Skips the calling test, saying how to install it, when SpamAssassin is not there."""
    program = shutil.which("spamassassin")
    if program is None:
        pytest.skip(NOT_INSTALLED)
    with tempfile.TemporaryDirectory(prefix="spamassassin-") as home:
        paths = []
        for n, data in enumerate(messages.values()):
            path = Path(home) / f"{n:03d}.eml"
            path.write_bytes(data)
            paths.append(str(path))
        # -L: local tests only (no DNS, no network); -x and a HOME of its own: no user preferences, Bayes database
        # or welcome list from whoever runs the tests, so the score is the same on every machine. report_safe 0:
        # a message it finds spam stays as it is, not wrapped in a report of its own (one report per message).
        done = subprocess.run(
            [program, "-t", "-L", "-x", "--cf", "report_safe 0", *paths],
            capture_output=True,
            text=True,
            env={"HOME": home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            timeout=120,
            check=False,
        )
    reports = [_parse(done.stdout, match) for match in _REPORT.finditer(done.stdout)]
    assert done.returncode == 0 and len(reports) == len(messages), (
        f"spamassassin exited {done.returncode} with {len(reports)} reports for {len(messages)} messages:\n"
        + done.stderr[-3000:]
    )
    return dict(zip(messages, reports, strict=True))


def _parse(output: str, match: re.Match) -> SpamReport:
    """The table after "Content analysis details": a rule per line, descriptions may wrap onto the next."""
    rules: list[tuple[float, str, str]] = []
    lines = output[match.end() :].splitlines()
    for line in lines[3:]:  # a blank line, the column titles and the dashes come first
        if not line.strip():
            break
        found = _RULE.match(line)
        if found:
            rules.append((float(found.group(1)), found.group(2), found.group(3).strip()))
        elif rules:
            points, rule, description = rules[-1]
            rules[-1] = (points, rule, f"{description} {line.strip()}")
    return SpamReport(float(match.group(1)), rules)
