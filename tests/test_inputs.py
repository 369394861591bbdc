"""Typed inputs (mailer/inputs.py) and the unit of work's after-commit calls (mailer/db.py)."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import Field, field_validator
from sqlalchemy import func, select

from mailer.db import after_commit
from mailer.errors import InvalidInput
from mailer.inputs import Input, parse
from mailer.models import Segment


class Heading(Input):
    type: Literal["heading"]
    text: str


class Text(Input):
    type: Literal["text"]
    markdown: str = Field(max_length=10)

    @field_validator("markdown")
    @classmethod
    def _written(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Write the text, or remove the block")
        return value


class Consent(Input):
    source: str
    collected: bool = False


class Draft(Input):
    subject: str
    count: int = 3
    consent: Consent | None = None
    blocks: list[Annotated[Heading | Text, Field(discriminator="type")]] = []


def errors_of(data) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse(Draft, data)
    return caught.value


def test_a_valid_input_comes_back_as_its_model():
    draft = parse(Draft, {"subject": "Hi", "blocks": [{"type": "heading", "text": "News"}]})
    assert draft.subject == "Hi" and draft.blocks == [Heading(type="heading", text="News")]


@pytest.mark.parametrize(
    ("data", "field", "sentence", "summary"),
    [
        ({}, "subject", "Required", "'subject' is required"),
        ({"subject": 5}, "subject", "Must be a string", "'subject' must be a string"),
        ({"subject": "Hi", "count": "3"}, "count", "Must be a whole number", "'count' must be a whole number"),
        ({"subject": "Hi", "count": True}, "count", "Must be a whole number", "'count' must be a whole number"),
        ({"subject": "Hi", "colour": "red"}, "colour", "Unknown field", "Unknown field(s): colour"),
        ({"subject": "Hi", "consent": {"source": "Form", "collected": "yes"}}, "consent.collected",
         "Must be true or false", "'consent.collected' must be true or false"),
        ({"subject": "Hi", "consent": {}}, "consent.source", "Required", "'consent.source' is required"),
        ({"subject": "Hi", "blocks": [{"type": "text", "markdown": " "}]}, "blocks[0].markdown",
         "Write the text, or remove the block", "blocks[0].markdown: Write the text, or remove the block"),
        ({"subject": "Hi", "blocks": [{"type": "text", "markdown": "x" * 11}]}, "blocks[0].markdown",
         "Must be 10 characters or fewer", "'blocks[0].markdown' must be 10 characters or fewer"),
        ({"subject": "Hi", "blocks": [{"type": "heading", "text": "A"}, {"type": "heading"}]}, "blocks[1].text",
         "Required", "'blocks[1].text' is required"),
        ({"subject": "Hi", "blocks": [{"type": "video"}]}, "blocks[0]", "Needs a type: one of 'heading', 'text'",
         "'blocks[0]' needs a type: one of 'heading', 'text'"),
        ({"subject": "Hi", "blocks": [{"text": "A"}]}, "blocks[0]", "Needs a type", "'blocks[0]' needs a type"),
        ({"subject": "Hi", "blocks": "none"}, "blocks", "Must be a list", "'blocks' must be a list"),
    ],
)
def test_errors_name_the_field_by_its_path_in_plain_english(data, field, sentence, summary):
    error = errors_of(data)
    assert error.errors[field] == sentence, error.errors
    assert summary in str(error)


def test_every_wrong_field_is_named_at_once():
    error = errors_of({"subject": 5, "colour": 1, "blocks": [{"type": "heading", "text": 2}]})
    assert set(error.errors) == {"subject", "colour", "blocks[0].text"}
    assert str(error).startswith("Unknown field(s): colour; ")


def test_a_prefix_places_the_paths_inside_a_larger_input():
    with pytest.raises(InvalidInput) as caught:
        parse(Consent, {"collected": True}, prefix="consent")
    assert caught.value.errors == {"consent.source": "Required"}


def test_after_commit_calls_run_once_the_work_is_committed_and_never_after_a_rollback(db):
    seen: list[tuple] = []

    def note(*args, **kwargs):
        with db.sessions() as session:  # what a worker would see when it runs
            seen.append((args, kwargs, session.scalar(select(func.count()).select_from(Segment))))

    with db.transaction() as session:
        session.add(Segment(name="X", rules={"all": []}))
        after_commit(session, note, 1, kind="added")
        assert seen == []  # not before the commit
    assert seen == [((1,), {"kind": "added"}, 1)]

    seen.clear()
    with pytest.raises(RuntimeError), db.transaction() as session:
        session.add(Segment(name="Y", rules={"all": []}))
        after_commit(session, note, 2)
        raise RuntimeError("refused")
    assert seen == []


def test_a_failing_after_commit_call_does_not_stop_the_others(db, caplog):
    seen = []

    def broken():
        raise OSError("queue down")

    with db.transaction() as session:
        after_commit(session, broken)
        after_commit(session, seen.append, "second")
    assert seen == ["second"]
    assert "after-commit call broken" in caplog.text
