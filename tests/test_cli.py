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
