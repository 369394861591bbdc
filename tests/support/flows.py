"""Steps a person takes, written once so tests read like the journey they prove."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from conftest import BASE_URL, csrf_from

LINK = re.compile(r"https?://\S+")


def links_in(text: str) -> list[str]:
    return [m.rstrip(").,>") for m in LINK.findall(text)]


def path_of(url: str) -> str:
    assert url.startswith(BASE_URL + "/"), f"{url} is not built from BASE_URL"
    return urlsplit(url).path


def without_nonce(page) -> bytes:
    """A page's body as every visitor gets it: only the per-response CSP nonce differs between two answers."""
    return re.sub(rb' nonce="[^"]*"', b"", page.data)


def subscribe(client, email: str, topics=("trust-matters",), **extra):
    page = client.get("/subscribe")
    data = {"csrf_token": csrf_from(page.data), "email": email, "topics": list(topics), "area": "hampshire", **extra}
    return client.post("/subscribe", data=data)


def confirm_link(received) -> str:
    return next(u for u in links_in(received.text()) if "/confirm/" in u)


def manage_link(received) -> str:
    return next(u for u in links_in(received.text()) if "/manage/" in u)


def unsubscribe_link(received) -> str:
    return received.message["List-Unsubscribe"].strip("<>")


def confirm(client, received):
    path = path_of(confirm_link(received))
    page = client.get(path)
    assert page.status_code == 200
    return client.post(path, data={"csrf_token": csrf_from(page.data)})


def sign_in(client, db, email="editor@hiow.nhs.uk", password="a long enough password", role="admin"):
    from mailer.accounts import create_admin

    with db.transaction() as session:
        create_admin(session, email, password, role=role)
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login", data={"csrf_token": csrf_from(page.data), "email": email, "password": password}
    )
    assert response.status_code == 303, response.data
    return response


def write_issue(
    client, subject="Trust Matters: November", body="# Hello\n\nNews from **Project Fusion**.", topic="trust-matters"
):
    page = client.get("/admin/issues/new")
    response = client.post(
        "/admin/issues/new",
        data={"csrf_token": csrf_from(page.data), "subject": subject, "body": body, "topic": topic, "preheader": ""},
    )
    assert response.status_code == 303, response.data
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def send_issue(client, issue_id: int):
    """Submit, approve and send through the admin pages (the signed-in account must be a publisher)."""
    for action in ("submit", "approve", "send"):
        page = client.get(f"/admin/issues/{issue_id}")
        response = client.post(f"/admin/issues/{issue_id}/{action}", data={"csrf_token": csrf_from(page.data)})
        assert response.status_code == 303, (action, response.status_code)
    return response


def approve_for_sending(session, issue_id: int) -> None:
    """The review a second person does, at the service level: draft → in_review → approved."""
    from mailer.compose.issues import approve_issue, submit_issue

    submit_issue(session, issue_id)
    approve_issue(session, issue_id)


def api_send(api_post, issue_id: int):
    """Submit, approve and send through the API; returns the send response."""
    for action in ("submit", "approve"):
        response = api_post(f"/issues/{issue_id}/{action}")
        assert response.status_code == 200, (action, response.get_json())
    return api_post(f"/issues/{issue_id}/send")


def legacy_token(settings, salt: str, payload, timed: bool = False) -> str:
    """A link token as the code before public ids made it (same keys, salts and digest): links in old inboxes."""
    import hashlib

    from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

    kind = URLSafeTimedSerializer if timed else URLSafeSerializer
    return kind(settings.secret_key, salt=salt, signer_kwargs={"digest_method": hashlib.sha256}).dumps(payload)


def issue_input(session, **fields):
    """An IssueInput as an adapter makes one: parsed with the database's topics (`audience.lookups.parse_in`)."""
    from mailer.audience.lookups import parse_in
    from mailer.compose.inputs import IssueInput

    return parse_in(session, IssueInput, fields)


def enrol_factor(db, settings, email: str) -> tuple[str, list[str]]:
    """Give an existing account its TOTP second factor, through the commands the enrolment page calls (the code
    typed back is the current one); returns the secret and the ten recovery codes."""
    import pyotp
    from sqlalchemy import select

    from mailer.accounts import factors
    from mailer.audit import Actor
    from mailer.models import AdminUser

    with db.transaction() as session:
        user = session.scalar(select(AdminUser).where(AdminUser.email == email))
        secret = factors.begin_enrolment(session, user, settings).secret
        codes = factors.confirm_enrolment(
            session, user, {"code": pyotp.TOTP(secret).now()}, settings, actor=Actor.user(user)
        )
    return secret, codes


def next_code(secret: str) -> str:
    """A code the app will show in the next 30 seconds: later than any used so far (no code is taken twice) and
    within the step either side of now that a sign-in accepts, whenever within a step the test runs."""
    import time

    import pyotp

    return pyotp.TOTP(secret).at(time.time() + 30)


def sign_in_with_code(client, email: str, code: str, password: str = "a long enough password"):
    """Both steps of signing in: the password, then the code (or a recovery code); the code step's answer."""
    page = client.get("/admin/login")
    first = client.post("/admin/login", data={"csrf_token": csrf_from(page.data), "email": email, "password": password})
    assert first.status_code == 303 and first.headers["Location"].endswith("/admin/login/code"), first.status_code
    page = client.get("/admin/login/code")
    return client.post("/admin/login/code", data={"csrf_token": csrf_from(page.data), "code": code})


def update_input(session, **fields):
    """An UpdateInput as an adapter makes one: parsed with the database's topics and areas (`lookups.parse_in`)."""
    from mailer.audience.lookups import parse_in
    from mailer.compose.inputs import UpdateInput

    return parse_in(session, UpdateInput, fields)
