"""The public's sign-up and "email me my link" forms, answered without telling anyone who subscribes.

The web request checks the form (nothing in the check reads subscribers), writes one `PublicRequest` row and
enqueues one task: the same statements and the same task for every address, so neither the answer nor its timing
says whether an address is known. The task (`act_on`) does the lookups: it records the sign-up as a consent
event (creating a pending subscriber for a new address) or finds whom to send a manage link, and deletes the row
in the same transaction, so each request is acted on once. The row outlives a broker that was down: the sweeper
acts on rows whose task never came (`waiting`), so no sign-up is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..errors import InvalidInput
from ..models import PublicRequest, Subscriber, email_key, utcnow
from .inputs import ManageLinkRequest, PublicSignUp, SignUp
from .subscriptions import request_subscription

log = logging.getLogger(__name__)

# Manage-link emails one address may be sent per hour, whoever asks: enough to find it, too few to flood.
MANAGE_LINKS_PER_HOUR = 3
# A request this old whose task has not run is taken to have lost its message; the sweeper acts on it.
LOST_AFTER = timedelta(minutes=1)


def queue_subscription(session: Session, data: SignUp, *, channel: str = "web", ip_hash: str | None = None) -> int:
    """Queue a checked sign-up; returns the request's id. Never reads subscribers: the caller enqueues
    `mailer.act_on_request` with the id after the commit."""
    payload = {
        "email": data.email,
        "topics": list(data.topics),
        **data.answers(),
        "frequency": data.frequency,
        "area_required": isinstance(data, PublicSignUp),
        "channel": channel,
        "ip_hash": ip_hash,
    }
    return _queue(session, "subscribe", payload)


def queue_manage_link(session: Session, data: ManageLinkRequest) -> int:
    """Queue "email me my link" for a checked address; returns the request's id."""
    return _queue(session, "manage_link", {"email": data.email})


def _queue(session: Session, kind: str, payload: dict) -> int:
    request = PublicRequest(kind=kind, payload=payload, created_at=utcnow())
    session.add(request)
    session.flush()
    return request.id


@dataclass
class Followup:
    """What to send once the transaction that acted on a request has committed."""

    confirmation: int | None = None  # the subscribe request (consent event) whose confirmation to send
    manage_link: int | None = None  # the subscriber to send their manage link to


def act_on(session: Session, request_id: int, may_send_manage_link: Callable[[str], bool]) -> Followup | None:
    """Act on one queued request and delete it; None if it was already acted on (a repeated task).

    `may_send_manage_link(address)` counts a manage-link mail against the address's hourly allowance."""
    request = session.get(PublicRequest, request_id)
    if request is None:
        return None
    # Deleted first: of two workers given the same request, the second waits here and then finds nothing.
    taken = session.execute(
        delete(PublicRequest).where(PublicRequest.id == request_id).execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        return None
    payload = request.payload
    if request.kind == "subscribe":
        try:
            outcome = request_subscription(
                session,
                email=payload["email"],
                topic_slugs=payload["topics"],
                name=payload.get("name"),
                area=payload.get("area"),
                audience=payload.get("audience"),
                services=payload.get("services") or [],
                frequency=payload.get("frequency") or "immediately",
                area_required=bool(payload.get("area_required")),
                channel=payload.get("channel") or "web",
                ip_hash=payload.get("ip_hash"),
                requested_at=request.created_at,
            )
        except InvalidInput as exc:
            # Valid when it was posted; a topic can have gone since. Nothing to record.
            log.warning("sign-up request %s no longer valid, dropped: %s", request_id, exc.errors)
            return Followup()
        return Followup(confirmation=outcome.request_id if outcome.send_confirmation else None)
    if request.kind == "manage_link":
        address = payload["email"]
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(address)))
        if subscriber is not None and subscriber.status != "erased" and may_send_manage_link(address):
            return Followup(manage_link=subscriber.id)
        return Followup()
    log.error("public request %s of unknown kind %r dropped", request_id, request.kind)
    return Followup()


def waiting(session: Session, lost_after: timedelta = LOST_AFTER, limit: int = 500) -> list[int]:
    """Requests older than `lost_after` that no task has acted on: their messages were lost."""
    return list(
        session.scalars(
            select(PublicRequest.id)
            .where(PublicRequest.created_at < utcnow() - lost_after)
            .order_by(PublicRequest.id)
            .limit(limit)
        )
    )


def manage_link_allowance(redis_url: str) -> Callable[[str], bool]:
    """Counts manage-link mails per address in Redis: False once one has had MANAGE_LINKS_PER_HOUR this hour."""

    def allowed(address: str) -> bool:
        client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        key = f"mailer:manage-link:{email_key(address)}"
        try:
            with client.pipeline() as pipe:
                # The window starts with the first request (SET NX; EXPIRE NX needs Redis 7).
                _, count = pipe.set(key, 0, ex=3600, nx=True).incr(key).execute()
        except redis.RedisError:
            return False  # without a count we cannot protect the inbox, so send nothing
        finally:
            client.close()
        return count <= MANAGE_LINKS_PER_HOUR

    return allowed
