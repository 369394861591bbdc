"""Debian's Chromium driven by Playwright: launching it, axe-core checks, CSP violations, and the sign-up form.

Shared by the browser tests over http (tests/test_browser.py) and over https behind a proxy (tests/test_https.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from mailer.config import ROOT

CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "Debian chromium not installed: apt-get install chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = {"serious", "critical"}
TIMEOUT_MS = 10_000


def launch_chromium(playwright, env: dict[str, str] | None = None):
    """Debian's Chromium (never a downloaded build). `env` replaces its environment, e.g. a HOME whose NSS
    database trusts a test certificate authority."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(NO_CHROMIUM)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000, env=env)


@contextmanager
def running_chromium() -> Iterator:
    """Debian's Chromium for the length of the block (a test module's fixture); the test is skipped without it."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


# --- Content-Security-Policy violations ------------------------------------------------------------------------

_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolation({
    page: document.location.href, directive: e.effectiveDirective, blocked: e.blockedURI,
    source: e.sourceFile, line: e.lineNumber, sample: e.sample,
}));
"""


@dataclass
class CspWatch:
    """Every CSP violation any page of a browser context reported, from the event and from the console."""

    violations: list[dict] = field(default_factory=list)

    def attach(self, context) -> CspWatch:
        # Injected by Playwright over the DevTools protocol, so the listener itself is not subject to the CSP.
        context.expose_binding("__cspViolation", lambda _source, report: self.violations.append(report))
        context.add_init_script(_REPORT_VIOLATIONS)
        context.on("console", self._console)
        return self

    def _console(self, message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.violations.append({"console": message.text, "page": message.location.get("url")})


# --- axe-core --------------------------------------------------------------------------------------------------


def axe_violations(page) -> list[dict]:
    """Run axe-core on the page as rendered; return its violations, reduced to what a person needs to fix them."""
    assert AXE.exists(), f"{AXE} missing: run npm install"
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated over the DevTools protocol: a <script> tag added to the page would (rightly) be refused by
        # the page's CSP, and bypass_csp would switch the policy off for the whole test.
        page.evaluate(AXE.read_text() + "\n;true")
    return page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ["violations"]});
            return results.violations.map(v => ({
                id: v.id,
                impact: v.impact,
                help: v.help,
                helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary})),
            }));
        }"""
    )


def assert_accessible(page, where: str) -> None:
    violations = axe_violations(page)
    minor = [v for v in violations if v["impact"] not in BLOCKING_IMPACTS]
    if minor:  # shown with -s or on failure; not a reason to fail
        print(f"axe ({where}), minor/moderate:", json.dumps(_brief(minor), indent=2))
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert not blocking, f"axe found serious/critical violations on {where} ({page.url}):\n" + json.dumps(
        _brief(blocking), indent=2
    )


def _brief(violations: list[dict]) -> list[dict]:
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [n["target"] for n in v["nodes"]],
            "html": [n["html"] for n in v["nodes"]][:5],
        }
        for v in violations
    ]


# --- steps -----------------------------------------------------------------------------------------------------


def fill_subscribe_form(page, email: str) -> None:
    page.get_by_label("Trust Matters", exact=True).check()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Where do you live or work?").select_option(label="Isle of Wight")
    page.get_by_label("Carer, family member or friend").check()
    page.get_by_label("Mental health services").check()
    page.get_by_role("button", name="Subscribe").click()


def sign_in(page, email: str, password: str = "a long enough password") -> None:
    page.goto("/admin/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
