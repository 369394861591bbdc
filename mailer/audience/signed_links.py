"""Who a signed link names: the person (or subscribe request) it was made for, or nobody.

Links name a person's random `public_id`, which is never given to anyone else, so a link can only reach the
person it was sent to. Links made before public ids (migration 0008) named row ids, and SQLite handed the id
of a deleted row to the next row, so an old link could reach someone else. Those links are still in inboxes;
each kind is honoured only where it cannot reach another person:

- unsubscribe [row id, topic]: on PostgreSQL, whose ids come from sequences and were never reused. On SQLite
  they do nothing: nothing in the link tells its person from a later one given the same id. The page offers
  to email a fresh link, so the person it was sent to can still leave.
- manage [row id, address hash prefix]: wherever the address still hashes to the prefix, which names the
  address itself; computed from the address as those links were (not from `email_hash`, which may change).
- confirm [request id]: signed with a time, expiring in 7 days. On SQLite only for a request made no later
  than the link was signed: a request given a reused id was made after the old one was deleted.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import NotFound
from ..links import ConfirmLink, ManageLink, UnsubscribeLink
from ..models import ConsentEvent, Subscriber, address_digest


class StaleLink(NotFound):
    """A link made before public ids that could name someone else here; a fresh one has to be asked for."""


def ids_never_reused(session: Session) -> bool:
    """True where row ids were never handed out twice, even before migration 0008: PostgreSQL's sequences."""
    return session.get_bind().dialect.name == "postgresql"


def _by_public_id(session: Session, public_id: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))


def _reachable(subscriber: Subscriber | None) -> Subscriber:
    if subscriber is None or subscriber.status == "erased":
        raise NotFound("We could not find that subscription")
    return subscriber


def unsubscribe_target(session: Session, link: UnsubscribeLink) -> Subscriber:
    """The person an unsubscribe link was sent to; NotFound (StaleLink) when it cannot be told."""
    if not link.legacy:
        return _reachable(_by_public_id(session, link.person))
    if not ids_never_reused(session):
        raise StaleLink("This unsubscribe link is from before our links changed")
    return _reachable(session.get(Subscriber, link.person))


def manage_target(session: Session, link: ManageLink) -> Subscriber:
    """The person a manage link was sent to, if they still have an address with us; NotFound otherwise."""
    if link.legacy:
        subscriber = session.get(Subscriber, link.person)
        if subscriber is None or not subscriber.email or address_digest(subscriber.email)[:12] != link.hash_prefix:
            raise NotFound("We could not find those subscriptions")
    else:
        subscriber = _by_public_id(session, link.person)
    # Someone erased or anonymised has no address: nothing of theirs to manage.
    if subscriber is None or subscriber.status == "erased" or not subscriber.email:
        raise NotFound("We could not find those subscriptions")
    return subscriber


def confirm_request(session: Session, link: ConfirmLink) -> ConsentEvent:
    """The subscribe request a confirmation link was made for; NotFound if it is gone or is someone else's."""
    request = session.get(ConsentEvent, link.request_id)
    if request is None or request.kind != "subscribe_requested":
        raise NotFound("That subscription request does not exist")
    subscriber = session.get(Subscriber, request.subscriber_id)
    if subscriber is None or subscriber.status == "erased":
        raise NotFound("That subscription request does not exist")
    if link.legacy:
        made_after_the_link = int(request.created_at.timestamp()) > link.signed_at.timestamp()
        if made_after_the_link and not ids_never_reused(session):
            raise NotFound("That subscription request does not exist")
    elif subscriber.public_id != link.person:
        raise NotFound("That subscription request does not exist")
    return request
