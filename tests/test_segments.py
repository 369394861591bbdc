"""Segment rules compile to one SQL query that picks exactly who a plain Python filter would pick.

The property test runs on whichever database the suite uses (SQLite by default, PostgreSQL with
TEST_DATABASE_URL), so both dialects are held to the same reference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, text

from mailer.audience.emails import hash_address
from mailer.audience.rules import describe, validate_rules
from mailer.audience.segments import check_rules, count, segment_audience, topic_audience
from mailer.errors import InvalidInput
from mailer.models import (
    AUDIENCES,
    FREQUENCIES,
    SEED_AREAS,
    SERVICES,
    ConsentEvent,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
    services_mask,
)

TOPICS = ["trust-matters", "project-fusion", "get-involved", "careers", "sustainability"]
AREAS = dict(SEED_AREAS)  # as migration 0017 seeds the areas table
# Moments either side of day boundaries, so "before"/"after" a date and a time are both tested at the edge.
MOMENTS = [
    datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
    datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC),
    datetime(2026, 1, 2, 0, 0, tzinfo=UTC),
    datetime(2026, 6, 30, 8, 30, tzinfo=UTC),
]
DATE_VALUES = ["2026-01-01", "2026-01-02", "2025-12-31", "2026-01-01T12:00:00", "2026-01-01T12:00:00Z", "2026-06-30"]

# --- the reference: a plain Python filter ---------------------------------------------------------------


def _when(value: str) -> tuple[datetime, bool]:
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC), True
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=UTC), False


def matches(person: dict, node: dict) -> bool:
    if "all" in node:
        return all(matches(person, n) for n in node["all"])
    if "any" in node:
        return any(matches(person, n) for n in node["any"])
    field, op, value = node["field"], node["op"], node["value"]
    if op in ("before", "after"):
        moment = person[field]
        if moment is None:
            return False
        limit, whole_day = _when(value)
        if op == "before":
            return moment < limit
        return moment >= limit + timedelta(days=1) if whole_day else moment > limit
    values = [value] if isinstance(value, str) else value
    negated = op in ("is_not", "not_in")
    open_subs = [(t, f) for t, f, ended in person["subs"] if not ended]
    if field == "topic":
        hit = any(t in values for t, _ in open_subs)
    elif field == "frequency":
        hit = any(f in values for _, f in open_subs)
    elif field == "service":
        hit = bool(set(person["services"]) & set(values))
    else:
        hit = person[field] in values  # None (not answered) is in no list
    return not hit if negated else hit


def reachable(person: dict) -> bool:
    return person["status"] == "active" and not person["suppressed"]


# --- generators ---------------------------------------------------------------------------------------------

people_st = st.lists(
    st.fixed_dictionaries(
        {
            "area": st.one_of(st.none(), st.sampled_from(list(AREAS))),
            "audience": st.one_of(st.none(), st.sampled_from(list(AUDIENCES))),
            "services": st.lists(st.sampled_from(list(SERVICES)), unique=True, max_size=3),
            "status": st.sampled_from(["active", "active", "active", "pending", "unsubscribed", "bounced"]),
            "suppressed": st.sampled_from([False, False, False, True]),
            "subscribed_at": st.one_of(st.none(), st.sampled_from(MOMENTS)),
            "confirmed_at": st.one_of(st.none(), st.sampled_from(MOMENTS)),
            "subs": st.lists(
                st.tuples(st.sampled_from(TOPICS), st.sampled_from(FREQUENCIES), st.booleans()),
                max_size=4,
                unique_by=lambda s: s[0],
            ),
        }
    ),
    max_size=14,
)

SET_CHOICES = {
    "topic": TOPICS,
    "area": list(AREAS),
    "audience": list(AUDIENCES),
    "service": list(SERVICES),
    "frequency": list(FREQUENCIES),
}


@st.composite
def condition_st(draw):
    field = draw(st.sampled_from([*SET_CHOICES, "subscribed_at", "confirmed_at"]))
    if field in ("subscribed_at", "confirmed_at"):
        return {
            "field": field,
            "op": draw(st.sampled_from(["before", "after"])),
            "value": draw(st.sampled_from(DATE_VALUES)),
        }
    op = draw(st.sampled_from(["is", "is_not", "in", "not_in"]))
    choices = SET_CHOICES[field]
    if op in ("is", "is_not"):
        return {"field": field, "op": op, "value": draw(st.sampled_from(choices))}
    return {
        "field": field,
        "op": op,
        "value": draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3, unique=True)),
    }


rules_st = st.recursive(
    condition_st(),
    lambda children: st.builds(
        lambda key, items: {key: items}, st.sampled_from(["all", "any"]), st.lists(children, min_size=1, max_size=3)
    ),
    max_leaves=6,
).map(lambda node: node if ("all" in node or "any" in node) else {"all": [node]})


def _load(db, people: list[dict]) -> list[int]:
    with db.transaction() as session:
        session.execute(delete(Subscription))
        session.execute(delete(Suppression))
        session.execute(delete(ConsentEvent))
        session.execute(delete(Subscriber))
        topic_ids = dict(session.execute(select(Topic.slug, Topic.id)).all())
        ids = []
        for n, person in enumerate(people):
            address = f"p{n}@example.org"
            subscriber = Subscriber(
                email=address,
                email_key=address,
                email_hash=hash_address(session, address),
                status=person["status"],
                area=person["area"],
                audience=person["audience"],
                services=services_mask(person["services"]),
                subscribed_at=person["subscribed_at"],
                confirmed_at=person["confirmed_at"],
            )
            session.add(subscriber)
            session.flush()
            ids.append(subscriber.id)
            for slug, frequency, ended in person["subs"]:
                session.add(
                    Subscription(
                        subscriber_id=subscriber.id,
                        topic_id=topic_ids[slug],
                        frequency=frequency,
                        ended_at=MOMENTS[0] if ended else None,
                        ended_reason="unsubscribed" if ended else None,
                    )
                )
            if person["suppressed"]:
                session.add(Suppression(email_hash=subscriber.email_hash, reason="bounced"))
    return ids


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(people=people_st, rules=rules_st)
def test_sql_picks_exactly_whom_the_python_filter_picks(db, people, rules):
    ids = _load(db, people)
    with db.sessions() as session:
        checked = check_rules(session, rules)
        assert checked == rules  # already normal: validation keeps a valid tree as it is
        got = set(session.scalars(segment_audience(checked)))
        expected = {ids[n] for n, p in enumerate(people) if reachable(p) and matches(p, rules)}
        assert got == expected, describe(rules)
        assert count(session, segment_audience(checked)) == len(expected)

        # An issue to a topic and this segment: its "as it happens" subscribers who also match.
        topic_id = session.scalar(select(Topic.id).where(Topic.slug == "project-fusion"))
        sent = set(session.scalars(topic_audience(topic_id, checked)))
        wanted = {
            ids[n]
            for n, p in enumerate(people)
            if reachable(p)
            and matches(p, rules)
            and any(t == "project-fusion" and f == "immediately" and not ended for t, f, ended in p["subs"])
        }
        assert sent == wanted


@pytest.mark.parametrize(
    ("rules", "path", "says"),
    [
        ({"all": [{"field": "colour", "op": "is", "value": "red"}]}, "rules.all[0].field", "unknown field 'colour'"),
        ({"all": [{"field": "area", "op": "contains", "value": "x"}]}, "rules.all[0].op", "unknown op 'contains'"),
        ({"any": [{"field": "area", "op": "is", "value": "mars"}]}, "rules.any[0].value", "unknown area 'mars'"),
        ({"all": [{"field": "topic", "op": "in", "value": "careers"}]}, "rules.all[0].value", "non-empty list"),
        ({"all": [{"field": "topic", "op": "is", "value": ["careers"]}]}, "rules.all[0].value", "one value"),
        ({"all": [{"field": "confirmed_at", "op": "is", "value": "2026-01-01"}]}, "rules.all[0].op", "before, after"),
        ({"all": [{"field": "confirmed_at", "op": "after", "value": "last week"}]}, "rules.all[0].value", "not a date"),
        ({"all": [{"field": "area", "op": "is", "value": "hampshire", "x": 1}]}, "rules.all[0]", "unknown key 'x'"),
        ({"all": []}, "rules.all", "at least one"),
        ({"both": []}, "rules", '{"all": [...]}'),
        ([], "rules", '{"all": [...]}'),
        (
            {"all": [{"any": [{"field": "topic", "op": "is", "value": "nope"}]}]},
            "rules.all[0].any[0].value",
            "unknown topic",
        ),
    ],
)
def test_bad_rules_name_where_they_are_wrong(rules, path, says):
    with pytest.raises(InvalidInput) as caught:
        validate_rules(rules, TOPICS, list(AREAS))
    assert path in caught.value.errors, caught.value.errors
    assert says in caught.value.errors[path]


def test_rules_nest_only_so_deep_and_so_many():
    deep = {"all": [{"field": "area", "op": "is", "value": "hampshire"}]}
    for _ in range(7):
        deep = {"any": [deep]}
    with pytest.raises(InvalidInput, match="nested at most"):
        validate_rules(deep, TOPICS, list(AREAS))
    wide = {"any": [{"field": "area", "op": "is", "value": "hampshire"}] * 201}
    with pytest.raises(InvalidInput, match="at most 200 conditions"):
        validate_rules(wide, TOPICS, list(AREAS))


def test_a_segment_reads_as_words():
    rules = {
        "all": [
            {"field": "area", "op": "is", "value": "isle-of-wight"},
            {
                "any": [
                    {"field": "audience", "op": "is", "value": "carer"},
                    {"field": "service", "op": "in", "value": ["mental-health"]},
                ]
            },
        ]
    }
    assert describe(rules, {}, AREAS) == (
        "Area is Isle of Wight and "
        "(Audience is Carer, family member or friend or Interested in is any of Mental health services)"
    )


# --- the subscription summary a trigger keeps on each subscriber ---------------------------------------


def _person(session, address: str) -> int:
    subscriber = Subscriber(
        email=address, email_key=address, email_hash=hash_address(session, address), status="active"
    )
    session.add(subscriber)
    session.flush()
    return subscriber.id


def test_segments_follow_subscriptions_written_by_plain_sql(db):
    """Rules read a summary the database keeps, so a bulk UPDATE outside the app moves people at once."""
    careers = {"all": [{"field": "topic", "op": "is", "value": "careers"}]}
    weekly = {
        "any": [
            {"field": "area", "op": "is", "value": "portsmouth"},
            {"field": "frequency", "op": "is", "value": "weekly"},
        ]
    }
    with db.transaction() as session:
        topic_ids = dict(session.execute(select(Topic.slug, Topic.id)).all())
        first, second = _person(session, "a@example.org"), _person(session, "b@example.org")
        session.execute(
            Subscription.__table__.insert(),
            [
                {"subscriber_id": first, "topic_id": topic_ids["careers"], "frequency": "weekly", "source": "web"},
                {
                    "subscriber_id": second,
                    "topic_id": topic_ids["careers"],
                    "frequency": "immediately",
                    "source": "web",
                },
                {
                    "subscriber_id": second,
                    "topic_id": topic_ids["get-involved"],
                    "frequency": "weekly",
                    "source": "web",
                },
            ],
        )
    with db.sessions() as session:
        assert set(session.scalars(segment_audience(check_rules(session, careers)))) == {first, second}
        assert set(session.scalars(segment_audience(check_rules(session, weekly)))) == {first, second}
    with db.transaction() as session:
        session.execute(
            Subscription.__table__.update()
            .where(Subscription.subscriber_id == second, Subscription.topic_id == topic_ids["get-involved"])
            .values(ended_at=MOMENTS[0], ended_reason="unsubscribed")
        )
        session.execute(
            Subscription.__table__.update().where(Subscription.subscriber_id == first).values(frequency="monthly")
        )
    with db.sessions() as session:
        assert set(session.scalars(segment_audience(check_rules(session, careers)))) == {first, second}
        assert set(session.scalars(segment_audience(check_rules(session, weekly)))) == set()
    with db.transaction() as session:
        session.execute(delete(Subscription).where(Subscription.subscriber_id == first))
    with db.sessions() as session:
        assert set(session.scalars(segment_audience(check_rules(session, careers)))) == {second}


def test_two_writers_to_one_person_both_land_in_the_summary(db):
    """Two transactions each record consent and add a topic for the same person, interleaved. The second's
    trigger waits for the first's lock on the person and then reads its committed row, so the summary holds
    both topics (without the lock it holds one). The lock is FOR NO KEY UPDATE: FOR UPDATE would also wait
    for the key-share lock the other's consent row took, and the two would deadlock (here: time out)."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time; the race needs PostgreSQL (TEST_DATABASE_URL)")
    import threading

    with db.transaction() as session:
        topic_ids = dict(session.execute(select(Topic.slug, Topic.id)).all())
        who = _person(session, "both@example.org")

    def consent(conn):
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        conn.execute(ConsentEvent.__table__.insert().values(subscriber_id=who, kind="subscribe", channel="api"))

    def add(conn, slug):
        conn.execute(
            Subscription.__table__.insert().values(
                subscriber_id=who, topic_id=topic_ids[slug], frequency="immediately", source="web"
            )
        )

    first, second = db.engine.connect(), db.engine.connect()
    first_tx, second_tx = first.begin(), second.begin()
    errors = []
    try:
        consent(first)
        consent(second)  # both now hold a key-share lock on the person (their consent rows' foreign key)
        add(first, "careers")  # locks the person until it commits
        done = threading.Event()

        def second_writer():
            try:
                add(second, "sustainability")
                second_tx.commit()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        done.wait(0.5)  # it is blocked on the lock (or, on a slow machine, not yet started: the same test)
        first_tx.commit()
        thread.join(30)
        assert not thread.is_alive() and not errors, errors
    finally:
        first.close()
        second.close()
    with db.sessions() as session:
        mask = session.scalar(select(Subscriber.topic_mask).where(Subscriber.id == who))
    assert mask == (1 << topic_ids["careers"]) | (1 << topic_ids["sustainability"])


def test_truncating_subscriptions_clears_every_summary(db):
    if db.dialect != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's (SQLite's DELETE fires the row triggers)")
    with db.transaction() as session:
        topic_id = session.scalar(select(Topic.id).where(Topic.slug == "careers"))
        who = _person(session, "t@example.org")
        session.add(Subscription(subscriber_id=who, topic_id=topic_id, frequency="weekly"))
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE subscriptions"))
    with db.sessions() as session:
        masks = session.execute(select(Subscriber.topic_mask, Subscriber.frequency_mask)).one()
    assert tuple(masks) == (0, 0)


def test_a_value_repeated_in_a_frequency_rule_means_it_once(db):
    with db.transaction() as session:
        topic_id = session.scalar(select(Topic.id).where(Topic.slug == "careers"))
        people = {}
        for frequency in FREQUENCIES:
            people[frequency] = _person(session, f"{frequency}@example.org")
            session.add(Subscription(subscriber_id=people[frequency], topic_id=topic_id, frequency=frequency))
    with db.sessions() as session:
        for op, value, wanted in (
            ("in", ["weekly", "weekly"], {"weekly"}),
            ("in", ["weekly", "monthly", "weekly"], {"weekly", "monthly"}),
            ("not_in", ["weekly", "monthly", "weekly"], {"immediately"}),
        ):
            rules = check_rules(session, {"all": [{"field": "frequency", "op": op, "value": value}]})
            assert set(session.scalars(segment_audience(rules))) == {people[f] for f in wanted}, (op, value)
