"""The preference centre: /manage/<token> (a signed link in every email) and "email me my link"."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from ...audience import commands, wording
from ...audience.inputs import ManageLinkRequest
from ...audience.signed_links import manage_target
from ...errors import InvalidInput, NotFound
from ...inputs import parse
from ...links import BadLink
from ...models import Subscriber
from ..context import db_session, runtime_of_app
from ..limits import MANAGE_LINK_LIMIT, limiter
from ..preferences import current_values, form_context, form_values, parse_form
from . import _bad_link, _ip_hash, bp

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
    try:
        with runtime_of_app().db.transaction() as session:
            subscriber = _subscriber_for(session, token)
            data = parse_form(session, request.form)
            commands.update_preferences(session, subscriber, data, commands.OWNER, ip_hash=_ip_hash())
    except (BadLink, NotFound):
        return _bad_link(BAD_MANAGE_LINK, link_request=True)
    except InvalidInput as exc:  # nothing was written: the form again, as posted, saying what to change
        session = db_session()
        subscriber = _subscriber_for(session, token)
        return _page(session, subscriber, token, form_values(request.form), errors=exc.errors, status=400)
    if data.everything or not data.topics:
        return render_template("unsubscribed.html", topic_name=None, remaining=[], token=None, manage_token=token)
    return redirect(url_for("public.manage", token=token, saved=1), code=303)


@bp.get("/manage")
def manage_link_form():
    return render_template("manage_request.html", errors={}, values={})


@bp.post("/manage")
@limiter.limit(MANAGE_LINK_LIMIT)
def manage_link_request():
    raw = request.form.get("email", "")
    try:
        # The same answer and the same work whether or not we know the address (one row, one task), so
        # neither the page nor its timing tells anyone who subscribes; the task looks the address up.
        data = parse(ManageLinkRequest, {"email": raw})
        with runtime_of_app().db.transaction() as session:
            commands.request_manage_link(session, data)
    except InvalidInput as exc:
        return render_template("manage_request.html", errors=exc.errors, values={"email": raw}), 400
    return render_template("manage_sent.html")
