"""The `mailer` command line."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from mailer.accounts import authenticate, token_for
from mailer.cli import main


def test_admin_create_then_sign_in(test_env, db):
    result = CliRunner().invoke(
        main,
        ["admin", "create", "comms@hiow.nhs.uk", "--role", "publisher"],
        env={**test_env, "MAILER_ADMIN_PASSWORD": "correct horse battery"},
    )
    assert result.exit_code == 0, result.output
    assert "created publisher comms@hiow.nhs.uk" in result.output
    with db.transaction() as s:
        assert authenticate(s, "Comms@hiow.nhs.uk", "correct horse battery").role == "publisher"
        assert authenticate(s, "comms@hiow.nhs.uk", "wrong password!!") is None


def test_admin_create_refuses_a_short_password(test_env):
    result = CliRunner().invoke(
        main, ["admin", "create", "comms@hiow.nhs.uk"], env={**test_env, "MAILER_ADMIN_PASSWORD": "short"}
    )
    assert result.exit_code != 0 and "at least 12 characters" in result.output


def test_token_create_prints_a_working_token(test_env, db):
    from mailer.accounts import create_admin

    with db.transaction() as s:
        create_admin(s, "comms@hiow.nhs.uk", "correct horse battery", role="admin")
    result = CliRunner().invoke(
        main, ["token", "create", "--name", "website", "--for", "comms@hiow.nhs.uk"], env=test_env
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip()
    with db.transaction() as s:
        assert token_for(s, secret).name == "website"


def test_init_is_idempotent(test_env, db):
    from mailer.models import Topic

    for _ in range(2):
        result = CliRunner().invoke(main, ["init"], env=test_env)
        assert result.exit_code == 0, result.output
    with db.transaction() as s:
        assert len(s.scalars(select(Topic)).all()) == 5


def test_openapi_prints_the_description_the_site_serves(test_env, client):
    import json

    result = CliRunner().invoke(main, ["openapi"], env=test_env)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    served = client.get("/api/v1/openapi.json").get_json()
    assert printed["paths"] == served["paths"] and printed["components"] == served["components"]


def _dkim_key() -> str:
    from mailer.transports.dkim import new_key, pem_of

    return pem_of(new_key(2048))


def test_dkim_check_prints_the_record_and_verifies_a_signed_sample(test_env, tmp_path):
    import dkim

    key = tmp_path / "dkim.pem"
    key.write_text(_dkim_key())
    env = {
        **test_env,
        "DKIM_DOMAIN": "mailer.test",
        "DKIM_SELECTOR": "tm2026",
        "DKIM_PRIVATE_KEY_PATH": str(key),
        "BOUNCE_DOMAIN": "bounces.mailer.test",
    }
    result = CliRunner().invoke(main, ["dkim", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "name:  tm2026._domainkey.mailer.test" in result.output
    [record] = [line.split("value: ", 1)[1] for line in result.output.splitlines() if "value: v=DKIM1" in line]
    assert record.startswith("v=DKIM1; k=rsa; p=")
    assert '_dmarc.mailer.test. IN TXT "v=DMARC1; p=none;' in result.output
    assert 'mailer.test. IN TXT "v=spf1' in result.output and "bounces.mailer.test. IN MX" in result.output
    assert "verified it with dkimpy against that record: OK" in result.output
    # The printed record is the key's: a message the workers sign verifies against it.
    from mailer.config import load_settings
    from mailer.transports.dkim import signer_for

    signer = signer_for(load_settings(env).deliverability)
    message = b"From: a@mailer.test\r\nTo: b@example.org\r\nSubject: x\r\n\r\nHello\r\n"
    assert dkim.verify(signer.sign_wire(message), dnsfunc=lambda name, timeout=5: record.encode())


def test_dkim_check_fails_clearly_when_dkim_is_not_set_up_or_the_key_is_bad(test_env):
    result = CliRunner().invoke(main, ["dkim", "check"], env=test_env)
    assert result.exit_code == 1 and "DKIM is not set up" in result.output
    assert "_dmarc.mailer.test" in result.output  # the advice that needs no key still comes
    partial = {**test_env, "DKIM_DOMAIN": "mailer.test"}
    result = CliRunner().invoke(main, ["dkim", "check"], env=partial)
    assert result.exit_code != 0 and "DKIM_PRIVATE_KEY, DKIM_SELECTOR unset" in result.output
    broken = {
        **partial,
        "DKIM_SELECTOR": "s",
        "DKIM_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----",
    }
    result = CliRunner().invoke(main, ["dkim", "check"], env=broken)
    assert result.exit_code != 0 and "not a PEM private key that can be read" in result.output
    assert "Traceback" not in result.output


def test_dkim_check_warns_when_the_signing_domain_is_not_the_from_domain(test_env):
    env = {**test_env, "DKIM_DOMAIN": "elsewhere.example", "DKIM_SELECTOR": "s1", "DKIM_PRIVATE_KEY": _dkim_key()}
    result = CliRunner().invoke(main, ["dkim", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert "WARNING: DKIM_DOMAIN elsewhere.example is not the From domain mailer.test" in result.output


def test_dkim_keygen_prints_a_key_that_dkim_check_accepts(test_env, tmp_path):
    result = CliRunner().invoke(main, ["dkim", "keygen", "--bits", "1024", "--selector", "new1"], env=test_env)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("-----BEGIN PRIVATE KEY-----") and "new1._domainkey.mailer.test." in result.stderr
    key = tmp_path / "new.pem"
    key.write_text(result.stdout)
    env = {**test_env, "DKIM_DOMAIN": "mailer.test", "DKIM_SELECTOR": "new1", "DKIM_PRIVATE_KEY_PATH": str(key)}
    checked = CliRunner().invoke(main, ["dkim", "check"], env=env)
    assert checked.exit_code == 0 and "RSA 1024 bits" in checked.output, checked.output
