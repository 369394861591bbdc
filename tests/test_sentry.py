"""Error reports (SENTRY_DSN): every string of an event scrubbed of addresses and tokens before it leaves; tried as
a unit, and with the real SDK sending a web error's envelope to a stand-in Sentry on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk

from conftest import wait_until
from mailer.config import ConfigError, load_settings
from mailer.models import email_hash
from mailer.ops.sentry import init_sentry, scrubber
from mailer.web import create_app
from support.production import production_env

KEY = "test-email-hash-key-not-for-production-0123456789"
SIGNED = "eyJwIjoiM2ZhOTEyMzQ1Njc4OTBhYmNkZWYiLCJ0IjpudWxsfQ.Zk2B3tZ1Gf0Yp4Qw9rN8sLh2VcE"


def test_the_scrubber_leaves_no_address_or_token_anywhere_in_an_event():
    event = {
        "message": "could not mail Jo@Example.org",
        "exception": {"values": [{"type": "ValueError", "value": "550 <patient@example.org> unknown"}]},
        "request": {
            "url": f"https://mailer.example/u/{SIGNED}",
            "query_string": "email=jo%40example.org&email=carer@example.org",
            "headers": {"Referer": f"https://mailer.example/manage/{SIGNED}", "Authorization": "Bearer tm_" + "x" * 43},
        },
        "breadcrumbs": {"values": [{"message": "sending to reader@example.org", "data": {"n": 3}}]},
        "extra": {"outcomes": {"team@example.nhs.uk": "sent"}, "args": ("dsn smtp://u:hunter2@relay:587",)},
        "level": "error",
    }
    scrubbed = scrubber(KEY)(event)
    text = json.dumps(scrubbed)
    for secret in ("Jo@", "patient@", "carer@", "reader@", "team@", SIGNED, "tm_xxxx", "hunter2"):
        assert secret not in text
    assert scrubbed["message"] == f"could not mail [email:{email_hash('jo@example.org', KEY)[:12]}]"
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"n": 3} and scrubbed["level"] == "error"
    assert list(scrubbed["extra"]["outcomes"].values()) == ["sent"]  # keys are scrubbed too
    assert event["message"] == "could not mail Jo@Example.org"  # a copy: the original is left as it was


class _StandIn(BaseHTTPRequestHandler):
    """Sentry's ingest endpoint as far as the SDK needs it: POST /api/<project>/envelope/, 200."""

    received: list[bytes] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        encoding = self.headers.get("Content-Encoding")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        self.received.append(body)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_):
        pass


@pytest.fixture()
def sentry_stand_in():
    _StandIn.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    sentry_sdk.get_client().close()
    sentry_sdk.init()  # no DSN: an inactive client for the rest of the tests
    server.shutdown()
    server.server_close()


def test_a_web_error_reaches_sentry_scrubbed(settings, sentry_stand_in):
    port = sentry_stand_in.server_address[1]
    ops = settings.operations.__class__(
        **{**vars(settings.operations), "sentry_dsn": f"http://publickey@127.0.0.1:{port}/1"}
    )
    reporting = settings.with_overrides(operations=ops)
    assert init_sentry(reporting, "web")
    app = create_app(reporting)

    @app.get("/boom")
    def boom():
        logging.getLogger("mailer.test").info("about to mail reader@example.org")
        raise ValueError("could not mail patient@example.org")

    answer = app.test_client().get("/boom?email=jo@example.org")
    assert answer.status_code == 500
    sentry_sdk.flush(5)
    envelopes = wait_until(lambda: _StandIn.received, 10, message="an envelope at the stand-in Sentry")
    raw = b"\n".join(envelopes)
    for secret in (b"patient@", b"reader@", b"jo@example.org", b"jo%40example.org"):
        assert secret not in raw
    events = [json.loads(line) for line in raw.splitlines() if line.startswith(b"{") and b'"level"' in line]
    [event] = [e for e in events if e.get("level") == "error"]
    assert event["tags"]["component"] == "web" and event["environment"] == "dev"
    assert "could not mail [email:" in json.dumps(event)
    assert "request_id" not in event.get("user", {}) and "ip_address" not in event.get("user", {})


def test_sentry_settings_are_checked(tmp_path):
    assert load_settings({"SECRET_KEY": "x", "EMAIL_HASH_KEY": "k" * 40}).operations.sentry_dsn is None
    with pytest.raises(ConfigError, match="SENTRY_DSN must look like"):
        load_settings({"SECRET_KEY": "x", "EMAIL_HASH_KEY": "k" * 40, "SENTRY_DSN": "not-a-dsn"})
    production = production_env(tmp_path / "var")
    assert load_settings(production).operations.sentry_environment == "production"
