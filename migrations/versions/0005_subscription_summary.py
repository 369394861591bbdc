"""subscription summary on subscribers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Each subscriber carries a summary of their open subscriptions: `topic_mask` (bit 1 << topic id per topic)
and `frequency_mask` (1 as it happens, 2 weekly, 4 monthly). Segment rules on topics and frequencies then
read a column of the row instead of probing subscriptions per person, which PostgreSQL cannot turn into a
join when the condition sits inside an "any" group (nested segment count p95 2.05 → 0.30 s on a million
subscribers, bench/README.md).

The database keeps the summary itself, with a trigger on subscriptions, so no write path (the ORM, a bulk
UPDATE, psql) can leave it stale. On PostgreSQL the trigger first locks the subscriber row, so two
transactions changing one person's subscriptions at once cannot each write a summary missing the other's.

On SQLite a later batch migration that recreates `subscriptions` drops these triggers, and one that recreates
`subscribers` fails while they name it: drop them first and create them again after. SQLite's
`INSERT OR REPLACE` deletes a clashing row without firing delete triggers; the app never uses it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The two summaries as aggregates over open subscriptions `s`. SUM(DISTINCT) of powers of two is their OR
# on both databases (SQLite has no bit_or; a person has one open row per topic).
TOPIC_BITS = "CAST(COALESCE(SUM(DISTINCT CAST(1 AS BIGINT) << s.topic_id), 0) AS BIGINT)"
FREQUENCY_BITS = (
    "CAST(COALESCE(SUM(DISTINCT CASE s.frequency WHEN 'immediately' THEN 1 WHEN 'weekly' THEN 2"
    " WHEN 'monthly' THEN 4 ELSE 0 END), 0) AS INTEGER)"
)


def _refresh(where: str) -> str:
    """Recompute the summaries of the subscribers matching `where` from their open subscriptions."""
    of_them = "FROM subscriptions s WHERE s.subscriber_id = subscribers.id AND s.ended_at IS NULL"
    return (
        f"UPDATE subscribers SET topic_mask = (SELECT {TOPIC_BITS} {of_them}), "
        f"frequency_mask = (SELECT {FREQUENCY_BITS} {of_them}) WHERE {where}"
    )


# Everyone's summary in one pass over the open subscriptions (bench/audience_bench.py uses it too).
BACKFILL = (
    "UPDATE subscribers SET topic_mask = a.topics, frequency_mask = a.frequencies FROM ("
    f"SELECT s.subscriber_id AS who, {TOPIC_BITS} AS topics, {FREQUENCY_BITS} AS frequencies"
    " FROM subscriptions s WHERE s.ended_at IS NULL GROUP BY s.subscriber_id"
    ") AS a WHERE subscribers.id = a.who"
)

WATCHED = "topic_id, frequency, ended_at, subscriber_id"

POSTGRESQL = [
    f"""
    CREATE FUNCTION subscriber_summary_refresh(who integer) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        -- Wait for any other transaction changing this person's subscriptions, then read with a fresh
        -- snapshot. NO KEY UPDATE (the lock the UPDATE below takes anyway), not UPDATE: that would also wait
        -- for the key-share locks foreign-key checks hold, and deadlock two writers adding rows for one person.
        PERFORM 1 FROM subscribers WHERE id = who FOR NO KEY UPDATE;
        {_refresh("id = who")};
    END $$
    """,
    """
    CREATE FUNCTION subscriptions_summarise() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            PERFORM subscriber_summary_refresh(OLD.subscriber_id);
        END IF;
        IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.subscriber_id IS DISTINCT FROM OLD.subscriber_id) THEN
            PERFORM subscriber_summary_refresh(NEW.subscriber_id);
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE TRIGGER subscriptions_summary AFTER INSERT OR DELETE OR UPDATE OF {WATCHED}
    ON subscriptions FOR EACH ROW EXECUTE FUNCTION subscriptions_summarise()
    """,
    # TRUNCATE fires no row trigger: nobody has an open subscription after it.
    """
    CREATE FUNCTION subscriptions_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE subscribers SET topic_mask = 0, frequency_mask = 0 WHERE topic_mask <> 0 OR frequency_mask <> 0;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER subscriptions_summary_truncate AFTER TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_truncated()
    """,
]

SQLITE = [
    f"CREATE TRIGGER subscriptions_summary_insert AFTER INSERT ON subscriptions "
    f"BEGIN {_refresh('id = NEW.subscriber_id')}; END",
    f"CREATE TRIGGER subscriptions_summary_delete AFTER DELETE ON subscriptions "
    f"BEGIN {_refresh('id = OLD.subscriber_id')}; END",
    f"CREATE TRIGGER subscriptions_summary_update AFTER UPDATE OF {WATCHED} ON subscriptions "
    f"BEGIN {_refresh('id IN (OLD.subscriber_id, NEW.subscriber_id)')}; END",
]


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("topic_mask", sa.BigInteger(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("frequency_mask", sa.Integer(), server_default="0", nullable=False))
    # The triggers first: on PostgreSQL creating them waits for writers to subscriptions that are under way
    # and holds off new ones until this commits, so no change can land between the backfill and the trigger.
    for statement in POSTGRESQL if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)
    op.execute(BACKFILL)
    # A bit per topic id in a signed 64-bit mask: a topic beyond it would be matched wrongly, so it cannot exist.
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.create_check_constraint(batch_op.f("ck_topics_id_fits_topic_mask"), "id BETWEEN 1 AND 62")


def downgrade() -> None:
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_topics_id_fits_topic_mask"), type_="check")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER subscriptions_summary_truncate ON subscriptions")
        op.execute("DROP FUNCTION subscriptions_truncated()")
        op.execute("DROP TRIGGER subscriptions_summary ON subscriptions")
        op.execute("DROP FUNCTION subscriptions_summarise()")
        op.execute("DROP FUNCTION subscriber_summary_refresh(integer)")
    else:
        for name in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER subscriptions_summary_{name}")
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("frequency_mask")
        batch_op.drop_column("topic_mask")
