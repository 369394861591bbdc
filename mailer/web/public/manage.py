"""The preference centre: /manage/<token> (a signed link in every email) and "email me my link"."""

from __future__ import annotations

import redis
from flask import redirect, render_template, request, url_for
from sqlalchemy import select

from ...audience import wording
from ...audience.emails import normalise_email
from ...audience.signed_links import manage_target
from ...errors import InvalidInput, NotFound
from ...links import BadLink
from ...models import Subscriber, email_key
from ...tasks import enqueue, send_manage_link
from .. import MANAGE_LINK_LIMIT, db_session, limiter, runtime_of_app
from ..preferences import current_values, form_context, save_preferences
from . import _bad_link, _ip_hash, bp

# Manage-link emails one address may be sent per hour, whoever asks: enough to find it, too few to flood.
MANAGE_LINKS_PER_HOUR = 3
BAD_MANAGE_LINK = "This link to manage your subscriptions is not valid. Ask for a new one below."


def _subscriber_for(session, token: str) -> Subscriber:
    return manage_target(session, runtime_of_app().links.read_manage(token))


def _page(session, subscriber, token, values, errors=None, saved=False, status=200):
    return (
        render_template(
            "manage.html",
            subscriber=subscriber,
            token=token,
            values=values,
            errors=errors or {},
            saved=saved,
            wording=wording.WORDING[wording.CURRENT],
            **form_context(session, subscriber),
        ),
        status,
    )


@bp.get("/manage/<token>")
def manage(token: str):
    session = db_session()
    try:
        subscriber = _subscriber_for(session, token)
    except (BadLink, NotFound):
        return _bad_link(BAD_MANAGE_LINK, link_request=True)
    saved = request.args.get("saved") == "1"
    return _page(session, subscriber, token, current_values(session, subscriber), saved=saved)


@bp.post("/manage/<token>")
def manage_save(token: str):
    rt = runtime_of_app()
    with rt.db.transaction() as session:
        try:
            subscriber = _subscriber_for(session, token)
        except (BadLink, NotFound):
            return _bad_link(BAD_MANAGE_LINK, link_request=True)
        outcome = save_preferences(session, subscriber, request.form, channel="web", ip_hash=_ip_hash())
        if outcome.errors:
            return _page(session, subscriber, token, outcome.values, errors=outcome.errors, status=400)
    if outcome.left_everything:
        return render_template("unsubscribed.html", topic_name=None, remaining=[], token=None, manage_token=token)
    return redirect(url_for("public.manage", token=token, saved=1), code=303)


def _address_allowance(email: str) -> bool:
    """Count a manage-link mail for this address; False once it has had MANAGE_LINKS_PER_HOUR this hour."""
    settings = runtime_of_app().settings
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    key = f"mailer:manage-link:{email_key(email)}"
    try:
        with client.pipeline() as pipe:
            # The window starts with the first request (SET NX; EXPIRE NX needs Redis 7).
            _, count = pipe.set(key, 0, ex=3600, nx=True).incr(key).execute()
    except redis.RedisError:
        return False  # without a count we cannot protect the inbox, so send nothing
    finally:
        client.close()
    return count <= MANAGE_LINKS_PER_HOUR


@bp.get("/manage")
def manage_link_form():
    return render_template("manage_request.html", errors={}, values={})


@bp.post("/manage")
@limiter.limit(MANAGE_LINK_LIMIT)
def manage_link_request():
    raw = request.form.get("email", "")
    try:
        address = normalise_email(raw)
    except InvalidInput as exc:
        return render_template("manage_request.html", errors=exc.errors, values={"email": raw}), 400
    session = db_session()
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(address)))
    # The same answer whether or not we know the address, so the form cannot tell anyone who subscribes.
    if subscriber is not None and subscriber.status != "erased" and _address_allowance(address):
        enqueue(send_manage_link, subscriber.id)
    return render_template("manage_sent.html")
