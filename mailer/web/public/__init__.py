"""Public pages: sign up, confirm, unsubscribe (including RFC 8058 one-click), health."""

from __future__ import annotations

import hashlib
import re

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for

from ...audience import commands, wording
from ...audience.inputs import PublicSignUp, Unsubscribe
from ...audience.lookups import offered_areas, offered_topics, parse_in
from ...audience.signed_links import StaleLink
from ...audience.subscriptions import confirmation_state, hash_ip, unsubscribe_state
from ...errors import Conflict, InvalidInput, NotFound
from ...inputs import parse
from ...links import BadLink
from ...models import AUDIENCES, FREQUENCY_LABELS, SERVICES
from ...ops.health import service_health
from ..context import db_session, runtime_of_app
from ..limits import ONE_CLICK_ADDRESS_LIMIT, ONE_CLICK_LINK_LIMIT, SUBSCRIBE_LIMIT, limiter
from ..security import csrf

bp = Blueprint("public", __name__)


def _ip_hash() -> str | None:
    return hash_ip(request.remote_addr, runtime_of_app().settings.secret_key)


def _bad_link(message: str, link_request: bool = False):
    return render_template("bad_link.html", message=message, link_request=link_request), 400


def _subscribe_form(errors=None, values=None, status=200, template="subscribe.html"):
    return (
        render_template(
            template,
            topics=offered_topics(db_session()),
            areas={area.slug: area.name for area in offered_areas(db_session())},
            audiences=AUDIENCES,
            services={slug: label for slug, (label, _) in SERVICES.items()},
            frequencies=FREQUENCY_LABELS,
            errors=errors or {},
            values=values or {"topics": [], "services": [], "frequency": "immediately"},
            wording=wording.WORDING[wording.CURRENT],
        ),
        status,
    )


@bp.get("/")
def index():
    return _subscribe_form(template="index.html")


@bp.get("/subscribe")
def subscribe_form():
    return _subscribe_form()


@bp.post("/subscribe")
@limiter.limit(SUBSCRIBE_LIMIT)
def subscribe():
    form = request.form
    values = {
        "email": form.get("email", ""),
        "name": form.get("name", ""),
        "area": form.get("area", ""),
        "audience": form.get("audience", ""),
        "services": form.getlist("services"),
        "frequency": form.get("frequency") or "immediately",
        "topics": form.getlist("topics"),
    }
    try:
        # The same work for every address (one row, one task): nothing here says who subscribes.
        with runtime_of_app().db.transaction() as session:
            data = parse_in(session, PublicSignUp, values)
            commands.subscribe(session, data, ip_hash=_ip_hash())
    except InvalidInput as exc:
        return _subscribe_form(errors=exc.errors, values=values, status=400)
    return redirect(url_for("public.check_email"), code=303)


@bp.get("/subscribe/check-your-email")
def check_email():
    return render_template("check_email.html")


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    # GET never changes anything: mail scanners open links. The button POSTs.
    try:
        link = runtime_of_app().links.read_confirm(token)
        already, topics_named = confirmation_state(db_session(), link)
    except (BadLink, NotFound):
        return _bad_link("This confirmation link is not valid or has expired. Subscribe again to get a new one.")
    if already:
        return render_template("confirmed.html", topics=[t.name for t in topics_named], already=True)
    return render_template("confirm.html", topics=topics_named, token=token)


@bp.post("/confirm/<token>")
def confirm(token: str):
    rt = runtime_of_app()
    try:
        link = rt.links.read_confirm(token)
        with rt.db.transaction() as session:
            outcome = commands.confirm(session, link, ip_hash=_ip_hash())
            topics_named = [t.name for t in outcome.topics]
            already = outcome.already_confirmed
    except (BadLink, NotFound):
        return _bad_link("This confirmation link is not valid or has expired. Subscribe again to get a new one.")
    except Conflict:
        already, topics_named = True, []
    return render_template("confirmed.html", topics=topics_named, already=already)


BAD_UNSUBSCRIBE_LINK = "This unsubscribe link is not valid. Use the link in the most recent email we sent you."
# A link from before public ids, where it could name someone else (mailer/audience/signed_links.py).
STALE_UNSUBSCRIBE_LINK = (
    "This unsubscribe link is from an older email, and we cannot be sure it is yours. "
    "Ask for a new link below: we will email it to you, and you can unsubscribe from there."
)


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    try:
        link = runtime_of_app().links.read_unsubscribe(token)
        topic, current = unsubscribe_state(db_session(), link)
    except StaleLink:
        return _bad_link(STALE_UNSUBSCRIBE_LINK, link_request=True)
    except (BadLink, NotFound):
        return _bad_link(BAD_UNSUBSCRIBE_LINK)
    return render_template(
        "unsubscribe.html",
        topic=topic,
        token=token,
        # The "everything" link (also in a confirmation mail, before any subscription exists) always offers to stop.
        subscribed=topic in current if topic else True,
        remaining=[t.name for t in current],
    )


def _link_key() -> str:
    """Rate-limit key for one unsubscribe link: a digest of its token (whatever the link format)."""
    return "link:" + hashlib.sha256(request.path.encode()).hexdigest()[:32]


def _too_many_unsubscribes(_limit):
    """One-click callers are programs: a plain-text 429 (Retry-After is added by the limiter)."""
    if request.form.get("List-Unsubscribe") != "One-Click":
        return None  # a person on the page gets the usual page
    return Response("Too many requests for this link: try again later.\n", 429, mimetype="text/plain")


@bp.post("/u/<token>")
@csrf.exempt  # RFC 8058: mail providers POST here without our form; the signed token is the credential
@limiter.limit(ONE_CLICK_LINK_LIMIT, key_func=_link_key, on_breach=_too_many_unsubscribes)
@limiter.limit(ONE_CLICK_ADDRESS_LIMIT, on_breach=_too_many_unsubscribes)
def unsubscribe_post(token: str):
    form = request.form
    data = parse(
        Unsubscribe,
        {"one_click": form.get("List-Unsubscribe") == "One-Click", "everything": form.get("scope") == "all"},
    )
    rt = runtime_of_app()
    try:
        link = rt.links.read_unsubscribe(token)
        with rt.db.transaction() as session:
            outcome = commands.unsubscribe(session, link, data, ip_hash=_ip_hash())
            topic_name = outcome.topic.name if outcome.topic else None
            remaining = [t.name for t in outcome.remaining]
    except StaleLink:
        if data.one_click:
            abort(400, "This unsubscribe link is from an older email: use the link in the most recent one.")
        return _bad_link(STALE_UNSUBSCRIBE_LINK, link_request=True)
    except (BadLink, NotFound):
        if data.one_click:
            abort(400, "This unsubscribe link is not valid.")
        return _bad_link(BAD_UNSUBSCRIBE_LINK)
    if data.one_click:
        return "You have been unsubscribed.\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template("unsubscribed.html", topic_name=topic_name, remaining=remaining, token=token)


@bp.get("/healthz")
def healthz():
    """The database and Redis (503 without them), beat and the queues (README: Operating it, for the rules)."""
    rt = runtime_of_app()
    health = service_health(rt.db, rt.settings.redis_url, rt.settings.operations)
    response = jsonify(health.body)
    response.status_code = health.http_status(strict=request.args.get("strict") not in (None, "", "0"))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/privacy")
def privacy():
    settings = runtime_of_app().settings
    return render_template(
        "privacy.html",
        wording=wording.WORDING[wording.CURRENT],
        unconfirmed_days=settings.unconfirmed_days,
        anonymise_after_days=settings.anonymise_after_days,
    )


@bp.get("/media/<name>")
def media_file(name: str):
    """Uploaded images, by content hash: a name never changes what it serves, so caches may keep it a year."""
    from flask import send_from_directory

    from ...compose.media import media_dir

    if not re.fullmatch(r"[0-9a-f]{64}\.(png|jpg|gif|webp)", name):
        abort(404)
    response = send_from_directory(media_dir(runtime_of_app().settings.var_dir), name, max_age=31536000)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- the archive ------------------------------------------------------------------------------------------


@bp.get("/news")
def news():
    from ...archive import entries

    return render_template("news.html", entries=entries(db_session(), limit=50))


# Pages are served as they were rendered when the issue was sent or the update published, never per view.
@bp.get("/news/<slug>")
def news_issue(slug: str):
    from ...archive import archived_issue
    from ...compose.issues import keep_archive_page

    issue = archived_issue(db_session(), slug)
    if issue is None:
        abort(404)
    html = issue.archive_html
    if html is None:  # sent before pages were kept (migration 0009): rendered this once
        with runtime_of_app().db.transaction() as session:
            html = keep_archive_page(session, archived_issue(session, slug))
    return render_template("news_issue.html", issue=issue, archive_html=html)


@bp.get("/news/updates/<slug>")
def news_update(slug: str):
    from ...archive import published_update
    from ...compose.updates import keep_update_page

    update = published_update(db_session(), slug)
    if update is None:
        abort(404)
    html = update.archive_html
    if html is None:  # published before pages were kept (migration 0009): rendered this once
        with runtime_of_app().db.transaction() as session:
            html = keep_update_page(published_update(session, slug))
    return render_template("news_update.html", update=update, body_html=html)


def _feed(kind: str):
    from ...archive import atom, entries, rss

    settings = runtime_of_app().settings
    items = entries(db_session(), limit=50)
    title = f"Trust Matters: news from {settings.organisation}"
    if kind == "atom":
        body, mimetype = atom(items, settings.base_url, title), "application/atom+xml"
    else:
        body = rss(items, settings.base_url, title, "Newsletters and Project Fusion progress updates")
        mimetype = "application/rss+xml"
    return body, 200, {"Content-Type": f"{mimetype}; charset=utf-8", "Cache-Control": "public, max-age=300"}


@bp.get("/news/feed.atom")
def news_atom():
    return _feed("atom")


@bp.get("/news/feed.rss")
def news_rss():
    return _feed("rss")


from . import manage, metrics  # noqa: E402,F401  (register the preference centre's and /metrics' routes on bp)
