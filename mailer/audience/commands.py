"""The audience's doors: one command per thing a person, the team or a program can ask of it.

Every adapter (a public page, an admin page, an API call, a CLI command) parses its input into the command's
model (`inputs.py`), opens the unit of work (`with db.transaction() as session:`), calls ONE of these and
renders what comes back. A command checks what its model could not (what the database holds: topics, the
segment's name being free), writes, records its audit row when the team or a program did it (`audit.record`;
what the public does is recorded as consent events, their own history, and never in the team's audit log)
and registers its follow-up tasks to be queued once the unit of work commits (`after_commit`). Commands never
commit.

The import's second half, reading the stored file into subscribers, is `importer.process_import` (run by the
`mailer.run_import` task; it commits a batch at a time and records its own `import.run` audit row).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit
from ..audit import Actor
from ..db import after_commit
from ..errors import Conflict
from ..links import ConfirmLink, UnsubscribeLink
from ..models import ApiToken, Area, Segment, Subscriber, Topic
from . import catalogue, erasure, importer, requests, subscriptions
from .changes import AddOutcome, Change, Origin, add, change_preferences, topics_wanted
from .inputs import (
    AreaChange,
    AreaInput,
    ImportUpload,
    ManageLinkRequest,
    NewSubscriber,
    Preferences,
    SegmentChange,
    SegmentInput,
    SignUp,
    TopicChange,
    TopicInput,
    Unsubscribe,
    wanted,
)
from .lookups import issues_using
from .rules import usable
from .segments import check_rules, get_segment, topics_by_slug
from .signed_links import confirm_request, unsubscribe_target

# The person a signed link was sent to, acting on their own subscriptions.
OWNER = Actor("public", None, "the subscriber, from a link we emailed them")
_CHANNELS = {"user": "admin", "token": "api", "public": "web"}


def channel_of(actor: Actor) -> str:
    """How a consent event names where a change came from: admin, api, web, or cli (a `mailer` command)."""
    return _CHANNELS.get(actor.type, "cli")


def _team_member(actor: Actor) -> int | None:
    return actor.id if actor.type == "user" else None


def _later(session: Session, task: str, *args) -> None:
    """Queue a task (by its name in mailer.tasks) once this unit of work commits; if the queue is down the
    sweeper finds the work."""
    from .. import tasks  # tasks imports this room, so it is looked up when first needed

    after_commit(session, tasks.enqueue, getattr(tasks, task), *args)


# --- the public ---------------------------------------------------------------------------------------------


def subscribe(session: Session, data: SignUp, *, ip_hash: str | None = None) -> int:
    """Queue a sign-up: one row and one task for every address, so nothing here says who subscribes. The task
    (`mailer.act_on_request`) records the request and sends the confirmation. Returns the queued request's id."""
    request_id = requests.queue_subscription(session, data, channel="web", ip_hash=ip_hash)
    _later(session, "act_on_request", request_id)
    return request_id


def request_manage_link(session: Session, data: ManageLinkRequest) -> int:
    """Queue "email me my link": the same answer and the same work whether or not we know the address; the task
    looks it up."""
    request_id = requests.queue_manage_link(session, data)
    _later(session, "act_on_request", request_id)
    return request_id


def act_on_request(
    session: Session, request_id: int, may_send_manage_link: Callable[[str], bool]
) -> requests.Followup | None:
    """What the `mailer.act_on_request` task (and the sweeper, for one whose task was lost) does with a queued
    sign-up or "email me my link": look the address up, record what is due, and queue its mail once this unit of
    work commits (a confirmation whose task is lost is resent by the sweeper). None if it was already acted on."""
    followup = requests.act_on(session, request_id, may_send_manage_link)
    if followup is not None and followup.confirmation:
        _later(session, "send_confirmation", followup.confirmation)
    if followup is not None and followup.manage_link:
        _later(session, "send_manage_link", followup.manage_link)
    return followup


def confirm(session: Session, link: ConfirmLink, *, ip_hash: str | None = None) -> subscriptions.ConfirmOutcome:
    """Confirm the subscribe request a confirmation link names (NotFound if it is gone or someone else's)."""
    return subscriptions.confirm_subscription(session, confirm_request(session, link).id, ip_hash=ip_hash)


def unsubscribe(
    session: Session, link: UnsubscribeLink, data: Unsubscribe, *, ip_hash: str | None = None
) -> subscriptions.UnsubscribeOutcome:
    """Leave the topic an unsubscribe link names (or everything), at once; again, it changes nothing."""
    subscriber = unsubscribe_target(session, link)
    return subscriptions.unsubscribe(
        session,
        subscriber.id,
        None if data.everything else link.topic_id,
        channel="one-click" if data.one_click else "web",
        ip_hash=ip_hash,
    )


# --- one person ---------------------------------------------------------------------------------------------


def update_preferences(
    session: Session, subscriber: Subscriber, data: Preferences, actor: Actor, *, ip_hash: str | None = None
) -> Change:
    """Set someone's topics, frequencies and answers: the person themselves (`OWNER`, from their link), or the
    team on their behalf, who can end subscriptions and change answers but never add back a topic the person
    left. InvalidInput when the address is suppressed and topics are chosen."""
    if subscriber.status == "erased":
        raise Conflict("This subscriber was erased.")
    chosen = {} if data.everything else wanted(data.topics)
    topics = topics_by_slug(session)  # the topics were checked when the input was parsed (`lookups.parse_in`)
    change = change_preferences(
        session,
        subscriber,
        subscriptions=topics_wanted(topics, chosen),
        answers=None if data.everything else data,  # leaving everything keeps their answers
        channel=channel_of(actor),
        ip_hash=ip_hash,
        admin_user_id=_team_member(actor),
    )
    if change and actor.type != "public":
        audit.record(session, actor, "subscriber.change", subscriber)
    return change


def add_subscriber(session: Session, data: NewSubscriber, actor: Actor) -> AddOutcome:
    """Add or update someone on the team's say-so; Conflict if only the person may bring their address back.
    With consent collected elsewhere they are active at once; otherwise the confirmation email is queued."""
    topics = topics_by_slug(session)  # checked when parsed
    token = session.get(ApiToken, actor.id) if actor.type == "token" else None
    origin = Origin(channel_of(actor), admin_user_id=_team_member(actor), api_token=token.name if token else None)
    outcome = add(session, data, topics_wanted(topics, data.wanted), origin)
    audit.record(session, actor, "subscriber.add", outcome.subscriber, created=outcome.created)
    if outcome.request_id is not None:
        _later(session, "send_confirmation", outcome.request_id)
    return outcome


def erase(session: Session, subscriber: Subscriber, actor: Actor) -> None:
    """Erase a person (UK GDPR article 17); Conflict if they already were."""
    erasure.erase(session, subscriber, channel=channel_of(actor), admin_user_id=_team_member(actor))
    audit.record(session, actor, "subscriber.erase", None, subscriber=subscriber.id)


def receive_import(session: Session, binary: IO[bytes], data: ImportUpload, actor: Actor) -> int:
    """Store an uploaded CSV file (ImportFileError if it cannot be imported at all) and queue its import."""
    record = importer.store_upload(session, binary, data, channel=channel_of(actor), actor=actor)
    _later(session, "run_import_task", record.id)
    return record.id


# --- segments -----------------------------------------------------------------------------------------------


def save_segment(
    session: Session, data: SegmentInput | SegmentChange, actor: Actor, segment_id: int | None = None
) -> Segment:
    """Create a segment, or change one (a SegmentChange changes only what it gives). InvalidInput for rules that
    cannot be compiled (their topics were checked when parsed); Conflict if the name is taken; NotFound for no such
    segment."""
    segment = get_segment(session, segment_id) if segment_id is not None else None
    # Rules sent were checked once, when parsed (with the database's topics); stored ones are checked as they
    # were saved before, so a rename does not keep rules that can no longer be used.
    rules = usable(data.rules) if data.rules is not None else check_rules(session, segment.rules)
    if segment is None:
        segment = Segment(created_by_id=_team_member(actor))
        session.add(segment)
    name = data.name if data.name is not None else segment.name
    segment.rules, segment.name = rules, name
    if data.description is not None or segment.description is None:
        segment.description = data.description or ""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:  # (the segment's own attributes are expired with the savepoint)
        raise Conflict(f"There is already a segment called {name!r}") from exc
    audit.record(session, actor, "segment.save", segment, name=segment.name)
    return segment


def delete_segment(session: Session, segment_id: int, actor: Actor) -> None:
    """Delete a segment no issue uses; a segment an issue was sent to is part of that issue's record."""
    segment = get_segment(session, segment_id)
    used = issues_using(session, segment.id, limit=1)
    if used:
        raise Conflict(f"Issue {used[0].id} uses this segment, so it cannot be deleted")
    session.delete(segment)
    session.flush()
    audit.record(session, actor, "segment.delete", None, segment=segment_id)


# --- the lists the team manages: topics and areas (see catalogue.py) -------------------------------------------
# Who may do which is the adapters' @require_role / token_required: creating, retiring and restoring (what the
# public is offered, what can be sent) need an admin; renaming, describing and reordering a publisher.


def create_topic(session: Session, data: TopicInput, actor: Actor) -> Topic:
    """A new topic, offered to the public at once. Conflict if its slug is taken or no topic id is left."""
    topic = catalogue.create_topic(session, data)
    audit.record(session, actor, "topic.create", topic, slug=topic.slug, name=topic.name)
    return topic


def change_topic(session: Session, topic_id: int, data: TopicChange, actor: Actor) -> Topic:
    """Rename, describe or move a topic (NotFound if there is none); a change that changes nothing records
    nothing."""
    topic = catalogue.get(session, Topic, topic_id)
    if changed := catalogue.change_topic(session, topic, data):
        audit.record(session, actor, "topic.change", topic, slug=topic.slug, **changed)
    return topic


def retire_topic(session: Session, topic_id: int, actor: Actor) -> Topic:
    """Stop offering and sending to a topic. Its subscriptions stay open as history (they come back into use if
    it is restored); sends already planned to it skip everyone left (the batch checks who is still wanted)."""
    topic = catalogue.get(session, Topic, topic_id)
    if catalogue.retire(session, topic):
        audit.record(session, actor, "topic.retire", topic, slug=topic.slug)
    return topic


def restore_topic(session: Session, topic_id: int, actor: Actor) -> Topic:
    """Offer and send to a retired topic again, to the subscriptions it kept."""
    topic = catalogue.get(session, Topic, topic_id)
    if catalogue.restore(session, topic):
        audit.record(session, actor, "topic.restore", topic, slug=topic.slug)
    return topic


def create_area(session: Session, data: AreaInput, actor: Actor) -> Area:
    """A new area, offered to the public at once (Conflict if its slug is taken)."""
    area = catalogue.create_area(session, data)
    audit.record(session, actor, "area.create", area, slug=area.slug, name=area.name)
    return area


def change_area(session: Session, area_id: int, data: AreaChange, actor: Actor) -> Area:
    """Rename or move an area (NotFound if there is none)."""
    area = catalogue.get(session, Area, area_id)
    if changed := catalogue.change_area(session, area, data):
        audit.record(session, actor, "area.change", area, slug=area.slug, **changed)
    return area


def retire_area(session: Session, area_id: int, actor: Actor) -> Area:
    """Stop offering an area; people who chose it keep it, and segments and updates may still name it."""
    area = catalogue.get(session, Area, area_id)
    if catalogue.retire(session, area):
        audit.record(session, actor, "area.retire", area, slug=area.slug)
    return area


def restore_area(session: Session, area_id: int, actor: Actor) -> Area:
    """Offer a retired area again."""
    area = catalogue.get(session, Area, area_id)
    if catalogue.restore(session, area):
        audit.record(session, actor, "area.restore", area, slug=area.slug)
    return area
