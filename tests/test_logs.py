"""Logs: one configuration, JSON lines in production, a request id followed from a web request into the tasks it
queued (on a real Celery worker's lines), and no address, token or password in any line."""

from __future__ import annotations

import io
import json
import logging
import uuid
from contextlib import contextmanager

import pytest

from conftest import WORKER_LOGS, csrf_from, wait_until
from mailer.config import ConfigError, load_settings
from mailer.models import email_hash
from mailer.ops.logs import REQUEST_ID, Context, JsonLinesFormatter, TextFormatter, logging_config
from mailer.web import create_app
from support.production import production_env

FORM = {"topics": ["trust-matters"], "area": "hampshire", "frequency": "immediately"}


@contextmanager
def lines_of_this_process(settings, formatter=JsonLinesFormatter):
    """What this process logs meanwhile, through the formatter and filter the configuration uses."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(settings.email_hash_key))
    handler.addFilter(Context())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _json_lines(text: str) -> list[dict]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):  # Celery's banner is printed, not logged
            found.append(json.loads(line))
    return found


def test_a_sign_up_is_followed_by_its_request_id_into_the_confirmation_task(settings, smtp_server, celery_workers):
    app = create_app(settings.with_overrides(trusted_proxies=1))  # the proxy in front sets X-Request-ID
    app.config["TESTING"] = True
    client = app.test_client()
    request_id = f"req-{uuid.uuid4().hex}"
    address = "follow.me@example.org"
    csrf = csrf_from(client.get("/subscribe").data)
    with lines_of_this_process(settings) as web_log:
        response = client.post(
            "/subscribe", data={"csrf_token": csrf, "email": address, **FORM}, headers={"X-Request-ID": request_id}
        )
    assert response.status_code == 303
    assert response.headers["X-Request-ID"] == request_id
    [request_line] = [line for line in _json_lines(web_log.getvalue()) if line.get("route") == "/subscribe"]
    assert request_line["request_id"] == request_id and request_line["status"] == 303
    assert request_line["component"] == "cli"  # this test process; gunicorn's say "web"

    smtp_server.wait_for(address)

    def worker_lines(task: str) -> list[dict]:
        lines = _json_lines(WORKER_LOGS["tx"].read_text())
        return [line for line in lines if line.get("request_id") == request_id and line.get("task") == task]

    # The web request queued act_on_request, which queued send_confirmation: both carry the request's id.
    [confirmation] = wait_until(lambda: worker_lines("mailer.send_confirmation"), message="the confirmation's line")
    assert "succeeded" in confirmation["message"] and confirmation["component"] == "worker"
    assert confirmation["level"] == "INFO" and confirmation["time"].endswith("+00:00")
    assert wait_until(lambda: worker_lines("mailer.act_on_request"), message="the sign-up task's line")
    assert address not in WORKER_LOGS["tx"].read_text()
    assert address not in web_log.getvalue()


def test_an_incoming_request_id_is_taken_only_from_a_trusted_proxy_and_only_if_well_formed(settings):
    untrusted = create_app(settings).test_client()
    answer = untrusted.get("/privacy", headers={"X-Request-ID": "chosen-by-the-client"})
    assert answer.headers["X-Request-ID"] != "chosen-by-the-client"
    assert len(answer.headers["X-Request-ID"]) == 32

    trusted = create_app(settings.with_overrides(trusted_proxies=1)).test_client()
    from_proxy = trusted.get("/privacy", headers={"X-Request-ID": "a1b2c3d4-proxy"})
    assert from_proxy.headers["X-Request-ID"] == "a1b2c3d4-proxy"
    for forged in ("x", "semi;colon-0123456789", "a" * 200, "spaces are not ids", "<script>alert(1)</script>"):
        given = trusted.get("/privacy", headers={"X-Request-ID": forged}).headers["X-Request-ID"]
        assert given != forged and len(given) == 32
    # Every answer has one, errors too, and no two requests share one.
    first, second = trusted.get("/no-such-page"), trusted.get("/no-such-page")
    assert first.status_code == 404 and first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_request_lines_name_the_route_never_the_path_with_its_token(settings, client):
    token = "eyJwIjoiM2ZhOTEyMzQ1Njc4OTBhYmNkZWYiLCJ0IjpudWxsfQ.Zk2B3tZ1Gf0Yp4Qw9rN8sLh2VcE"
    with lines_of_this_process(settings) as log:
        client.get(f"/u/{token}")
    [line] = [line for line in _json_lines(log.getvalue()) if line["logger"] == "mailer.web.requests"]
    assert line["route"] == "/u/<token>" and line["method"] == "GET" and isinstance(line["duration_ms"], float)
    assert token not in log.getvalue()


def test_addresses_are_hashed_and_tokens_and_passwords_left_out_of_every_line(settings):
    log = logging.getLogger("mailer.test")
    api_token = "tm_" + "A1b2C3d4" * 5
    with lines_of_this_process(settings) as json_log, lines_of_this_process(settings, TextFormatter) as text_log:
        log.warning("refused: 550 5.1.1 <Jo.Bloggs@Example.org> and jö@exämple.org unknown")
        log.info("token %s, broker redis://:hunter2hunter2@redis:6379/0, Bearer abcdefghijklmnop", api_token)
        try:
            raise ValueError("could not mail patient@example.org")
        except ValueError:
            log.exception("sending failed")
    for text in (json_log.getvalue(), text_log.getvalue()):
        for secret in ("Bloggs", "patient@", "exämple", "jö@", "hunter2", api_token, "abcdefghijklmnop"):
            assert secret not in text
        assert f"[email:{email_hash('jo.bloggs@example.org', settings.email_hash_key)[:12]}]" in text
        assert "redis://:***@redis:6379/0" in text and "tm_[token]" in text
    refused, token_line, failure = _json_lines(json_log.getvalue())
    assert refused["level"] == "WARNING" and refused["logger"] == "mailer.test"
    assert "ValueError: could not mail [email:" in failure["exception"]
    assert "request_id" not in refused  # outside a request: no field rather than a null one


def test_a_line_written_during_a_request_or_task_says_which(settings):
    with lines_of_this_process(settings, TextFormatter) as log:
        token = REQUEST_ID.set("0123456789abcdef")
        try:
            logging.getLogger("mailer.test").info("inside")
        finally:
            REQUEST_ID.reset(token)
        logging.getLogger("mailer.test").info("outside")
    inside, outside = log.getvalue().splitlines()
    assert "mailer.test [request_id=0123456789abcdef]: inside" in inside
    assert outside.endswith("mailer.test: outside")


def test_log_settings_default_to_json_in_production_and_refuse_nonsense(tmp_path):
    production = production_env(tmp_path / "var")
    assert load_settings(production).operations.log_format == "json"
    assert load_settings({"SECRET_KEY": "x", "EMAIL_HASH_KEY": "k" * 40}).operations.log_format == "text"
    quiet = load_settings({**production, "LOG_FORMAT": "text", "LOG_LEVEL": "warning"}).operations
    assert (quiet.log_format, quiet.log_level) == ("text", "WARNING")
    config = logging_config(quiet, production["EMAIL_HASH_KEY"])
    assert config["root"]["level"] == "WARNING" and config["formatters"]["line"]["()"] is TextFormatter
    for name, value, words in (
        ("LOG_LEVEL", "chatty", "LOG_LEVEL must be one of DEBUG"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or text"),
    ):
        with pytest.raises(ConfigError, match=words):
            load_settings({**production, name: value})
