"""`mailer doctor`: a line per check, ok / warn / FAIL, exit 1 on a FAIL; tried against the test database, Redis
and SMTP server, closed ports, a schema behind, a wrong key, and a DNS server of the test's own."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from conftest import free_port
from mailer.cli import main
from mailer.config import ROOT, load_settings
from mailer.ops.doctor import diagnose
from mailer.runtime import Runtime
from mailer.schema import migrate
from mailer.transports.dkim import new_key, pem_of, public_record
from support.dns_standin import DnsStandIn, txt


def _findings(env, **kwargs) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for finding in diagnose(env, **kwargs):
        found.setdefault(finding.check, []).append((finding.state, finding.detail))
    return found


def test_doctor_finds_everything_ok_on_the_test_services_and_exits_0(test_env, smtp_server):
    result = CliRunner(env=test_env).invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for check in ("configuration", "database", "redis", "smtp"):
        assert any(line.startswith(f"ok   {check}: ") for line in lines), result.output
    assert f"ok   smtp: 127.0.0.1:{smtp_server.port}: EHLO" in lines
    assert not any(line.startswith("FAIL") for line in lines)


def test_a_closed_port_or_a_missing_starttls_is_a_smtp_failure_and_exit_1(test_env, smtp_server):
    closed = {**test_env, "SMTP_URL": f"smtp://127.0.0.1:{free_port()}"}
    result = CliRunner(env=closed).invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "FAIL smtp: cannot connect to 127.0.0.1:" in result.output
    assert "ok   database:" in result.output  # every check still runs
    [(state, detail)] = _findings({**test_env, "SMTP_URL": test_env["SMTP_URL"] + "?starttls=1"})["smtp"]
    assert (state, detail) == ("FAIL", f"127.0.0.1:{smtp_server.port} does not offer STARTTLS, which SMTP_URL asks for")
    [(state, detail)] = _findings({**test_env, "SMTP_URL": f"smtp://jo:secret@127.0.0.1:{smtp_server.port}"})["smtp"]
    assert state == "FAIL" and "secret" not in detail


def test_redis_down_a_schema_behind_and_another_hash_key_fail(test_env, tmp_path):
    [(state, detail)] = _findings({**test_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})["redis"]
    assert state == "FAIL" and detail.startswith("does not answer PING")
    behind = f"sqlite:///{tmp_path / 'behind.db'}"
    migrate(behind, "0012")
    [(state, detail)] = _findings({**test_env, "DATABASE_URL": behind})["database"]
    newest = max(path.name[:4] for path in (ROOT / "migrations" / "versions").glob("[0-9]*.py"))
    assert (state, detail) == ("FAIL", f"sqlite: schema at 0012, the newest is {newest}: run `mailer init`")
    Runtime.build(load_settings(test_env))  # what every process does at start: the key's fingerprint recorded
    other_key = {**test_env, "EMAIL_HASH_KEY": "another-key-another-key-another-key-0123"}
    [(state, detail)] = _findings(other_key)["database"]
    assert state == "FAIL" and "EMAIL_HASH_KEY is not the key" in detail


def test_a_setting_that_does_not_read_is_the_one_failure_reported(test_env):
    result = CliRunner(env={**test_env, "LOG_LEVEL": "loud"}).invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "FAIL configuration: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"
    ]


@pytest.fixture()
def dkim_env(test_env):
    key = new_key(1024)
    env = {
        **test_env,
        "DKIM_DOMAIN": "mailer.test",
        "DKIM_SELECTOR": "s2026",
        "DKIM_PRIVATE_KEY": pem_of(key),
        "BOUNCE_DOMAIN": "bounces.mailer.test",
    }
    return env, public_record(key)


def test_dns_records_are_checked_against_our_key_when_dkim_is_set(dkim_env):
    env, record = dkim_env
    server = DnsStandIn(
        {
            ("s2026._domainkey.mailer.test", "TXT"): [txt(record)],
            ("mailer.test", "TXT"): [txt("v=spf1 include:spf.protection.outlook.com -all"), txt("google-site=x")],
            ("bounces.mailer.test", "MX"): ["10 receiver.mailer.test."],
        }
    ).start()
    try:
        dns = _findings(env, nameservers=[("127.0.0.1", server.port)])["dns"]
    finally:
        server.stop()
    assert dns == [
        ("ok", "DKIM: s2026._domainkey.mailer.test publishes our key"),
        ("ok", "SPF: mailer.test v=spf1 include:spf.protection.outlook.com -all"),
        ("warn", "DMARC: _dmarc.mailer.test does not exist in DNS: start with p=none"),
        ("ok", "bounce domain: bounces.mailer.test MX receiver.mailer.test"),
    ]


def test_another_dkim_key_fails_and_a_dns_that_does_not_answer_only_warns(dkim_env):
    env, _ours = dkim_env
    theirs = public_record(new_key(1024))
    server = DnsStandIn({("s2026._domainkey.mailer.test", "TXT"): [txt(theirs)]}).start()
    try:
        [dkim, *_] = _findings(env, nameservers=[("127.0.0.1", server.port)])["dns"]
    finally:
        server.stop()
    assert dkim[0] == "FAIL" and "another key" in dkim[1]
    silent = _findings(env, nameservers=[("127.0.0.1", free_port())], dns_lifetime=0.3)
    assert [state for state, _ in silent["dns"]] == ["warn"] * 4
    assert "no DNS answer for s2026._domainkey.mailer.test within 0.3 s" in silent["dns"][0][1]
    result = CliRunner(env=env).invoke(main, ["doctor"])  # the system's resolvers: whatever they say, no crash
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
