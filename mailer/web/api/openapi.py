"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Written by hand (issue 14 will generate it from the input models), and held to the API two ways: schemathesis
calls every operation with what this describes and checks every answer against it (tests/test_api_contract.py),
and a test compares the documented response properties with what each resource really carries. Request schemas
are as strict as the server: what they allow, the server accepts or answers with a documented 4xx. Enumerations
come from the models, so a new area or status cannot leave them behind.
"""

from __future__ import annotations

from ...audience.inputs import DATE_OPS, FIELDS, MAX_CONDITIONS, MAX_DEPTH, NAME_MAX, SET_OPS, SOURCE_MAX
from ...compose import inputs
from ...compose.inputs import MAX_BLOCKS, TEXT_MAX
from ...models import (
    AREAS,
    AUDIENCES,
    DELIVERY_STATUSES,
    FREQUENCIES,
    IMPORT_STATUSES,
    ISSUE_STATUSES,
    MAX_ID,
    SEED_TOPICS,
    SERVICES,
)
from ...models.subscribers import SUBSCRIBER_STATUSES

ERROR = {"$ref": "#/components/schemas/Error"}
ONE_LINE = "^[^\\n\\r\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef\\ufffe\\uffff]*$"
BIG = 2**63 - 1
TOPIC_SLUGS = [slug for slug, _name, _description in SEED_TOPICS]
DATE_TIME = {"type": "string", "format": "date-time"}
DATE_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
STRING_OR_NULL = {"type": ["string", "null"]}
INT_OR_NULL = {"type": ["integer", "null"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "Invalid input: `fields` names each wrong field",
        401: "Missing or invalid token",
        403: "The role of this token cannot do this",
        404: "Not found",
        409: "Does not fit the current state",
        413: "The body is too large",
        415: "Not JSON (or, for an import, not CSV)",
        429: "Too many requests from this token or this address; Retry-After gives the seconds to wait",
        503: "The queue is not answering: try again shortly",
    }
    if 401 in codes:  # every call with a token is rate limited
        codes = (*codes, 429)
    responses = {str(code): {"description": text[code], **_json(ERROR)} for code in codes}
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return responses


def _object(properties: dict, required=None, *, closed: bool = False, **extra) -> dict:
    """An object schema; `required` defaults to every property (what the API always sends)."""
    schema = {"type": "object", "properties": properties}
    schema["required"] = list(properties if required is None else required)
    if closed:
        schema["additionalProperties"] = False
    return schema | extra


def _op(summary: str, ok: dict, errors: tuple[int, ...], params=(), body: dict | None = None) -> dict:
    op = {"summary": summary, "responses": {**ok, **_errors(*errors)}}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, **body}
    return op


def _id_param(name: str) -> dict:
    # Paths take at most ten digits (a longer number matches no route); no row has an id above MAX_ID.
    schema = {"type": "integer", "minimum": 0, "maximum": MAX_ID}
    return {"name": name, "in": "path", "required": True, "schema": schema}


def schemas() -> dict:
    """The components every operation refers to."""
    counts = _object({status: {"type": "integer", "minimum": 0} for status in DELIVERY_STATUSES})
    # One line with no invisible control characters (what `has_control_characters` refuses).
    line = {"type": "string", "maxLength": inputs.SUBJECT_MAX, "pattern": ONE_LINE}
    blocks = {
        "heading": ({"text": {"type": "string", "description": "line breaks become spaces"}}, ["text"]),
        "text": ({"markdown": {"type": "string", "maxLength": TEXT_MAX}}, ["markdown"]),
        "image": (
            {
                "media": {"type": "integer", "minimum": 1, "maximum": MAX_ID, "description": "an uploaded image's id"},
                "alt": {"type": "string", "maxLength": 300},
                "caption": {"type": "string", "maxLength": 300},
                "link": {"type": "string", "format": "uri", "description": "http(s)"},
            },
            ["media", "alt"],
        ),
        "button": (
            {
                "label": {"type": "string", "maxLength": 60},
                "url": {"type": "string", "format": "uri", "description": "http(s) or mailto:"},
            },
            ["label", "url"],
        ),
        "updates": ({"count": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3}}, []),
        "divider": ({}, []),
    }
    set_fields = [field for field, ops in FIELDS.items() if ops == SET_OPS]
    date_fields = [field for field, ops in FIELDS.items() if ops == DATE_OPS]
    values = {"topic": TOPIC_SLUGS, "area": list(AREAS), "audience": list(AUDIENCES), "service": list(SERVICES)}
    values["frequency"] = list(FREQUENCIES)
    conditions = []
    for field in set_fields:
        one = {"type": "string", "enum": values[field]}
        many = {"type": "array", "minItems": 1, "items": one}
        for ops, value in ((["is", "is_not"], one), (["in", "not_in"], many)):
            conditions.append(_object({"field": {"const": field}, "op": {"enum": ops}, "value": value}, closed=True))
    when = {
        "type": "string",
        "maxLength": 40,
        "description": "YYYY-MM-DD (a whole day, UTC) or an ISO date and time, in the years 1900 to 2999",
        "examples": ["2026-03-31", "2026-03-31T09:00:00Z"],
    }
    dated = {"field": {"enum": date_fields}, "op": {"enum": list(DATE_OPS)}, "value": when}
    conditions.append(_object(dated, closed=True))
    return {
        "Error": _object(
            {"error": {"type": "string"}, "fields": {"type": "object", "additionalProperties": {"type": "string"}}},
            ["error"],
        ),
        "Topic": _object({"slug": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"}}),
        "Block": {
            "description": "One block of an issue's content",
            "oneOf": [
                _object({"type": {"const": kind}, **fields}, ["type", *required], closed=True)
                for kind, (fields, required) in blocks.items()
            ],
        },
        "IssueInput": _object(
            {
                "subject": line | {"minLength": 1},
                "body": {"type": "string", "maxLength": inputs.BODY_MAX, "description": "Markdown, unless blocks"},
                "topic": {"type": "string", "enum": TOPIC_SLUGS},
                "preheader": line,
                "segment": INT_OR_NULL | {"minimum": 1, "maximum": MAX_ID, "description": "only those in this segment"},
                "blocks": {"type": "array", "maxItems": MAX_BLOCKS, "items": _ref("Block"), "description": "or body"},
            },
            ["subject", "topic"],
            closed=True,
            anyOf=[{"required": ["body"]}, {"required": ["blocks"]}],
        ),
        "Issue": _object(
            {
                "id": {"type": "integer"},
                "subject": {"type": "string"},
                "preheader": {"type": "string"},
                "kind": {"enum": ["newsletter", "update", "digest"]},
                "topic": {"type": "string"},
                "segment": INT_OR_NULL,
                "status": {"enum": list(ISSUE_STATUSES)},
                "send_at": DATE_TIME_OR_NULL,
                "submitted_at": DATE_TIME_OR_NULL,
                "approved_at": DATE_TIME_OR_NULL,
                "recipients": INT_OR_NULL,
                "counts": counts,
                "created_at": DATE_TIME,
                "send_requested_at": DATE_TIME_OR_NULL,
                "finished_at": DATE_TIME_OR_NULL,
            }
        ),
        "Delivery": _object(
            {
                "id": {"type": "integer"},
                "email": STRING_OR_NULL,
                "status": {"enum": list(DELIVERY_STATUSES)},
                "attempts": {"type": "integer"},
                "reason": STRING_OR_NULL,
                "sent_at": DATE_TIME_OR_NULL,
            }
        ),
        "Condition": {"oneOf": conditions},
        "Rules": {
            "description": f'{{"all": [...]}} or {{"any": [...]}} of conditions and groups, nested at most {MAX_DEPTH} '
            f"deep, at most {MAX_CONDITIONS} conditions",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": {
                key: {"type": "array", "minItems": 1, "items": {"anyOf": [_ref("Condition"), _ref("Rules")]}}
                for key in ("all", "any")
            },
            "examples": [
                {
                    "all": [
                        {"field": "area", "op": "is", "value": "isle-of-wight"},
                        {"field": "audience", "op": "in", "value": ["carer"]},
                    ]
                }
            ],
        },
        "Segment": _object(
            {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "description": {"type": "string"},
                "rules": _ref("Rules"),
                "summary": {"type": "string", "description": "the rules in words"},
                "created_at": DATE_TIME,
                "updated_at": DATE_TIME,
            }
        ),
        "Subscription": _object(
            {
                "topic": {"type": "string"},
                "frequency": {"enum": list(FREQUENCIES)},
                "source": STRING_OR_NULL,
                "started_at": DATE_TIME,
                "ended_at": DATE_TIME_OR_NULL,
                "ended_reason": STRING_OR_NULL,
            }
        ),
        "ConsentEvent": _object(
            {
                "id": {"type": "integer"},
                "kind": {"type": "string", "examples": ["subscribe", "confirm", "change", "unsubscribe"]},
                "channel": {"type": "string", "examples": ["web", "email", "api", "import", "admin"]},
                "at": DATE_TIME,
                "wording_version": STRING_OR_NULL,
                "wording": STRING_OR_NULL,
                "details": {"type": ["object", "null"]},
                "admin_user_id": INT_OR_NULL,
                "import_id": INT_OR_NULL,
            }
        ),
        "Subscriber": _object(
            {
                "id": {"type": "integer"},
                "email": STRING_OR_NULL,
                "status": {"enum": list(SUBSCRIBER_STATUSES)},
                "name": STRING_OR_NULL,
                "area": {"enum": [*AREAS, None]},
                "audience": {"enum": [*AUDIENCES, None]},
                "services": {"type": "array", "items": {"enum": list(SERVICES)}},
                "subscribed_at": DATE_TIME_OR_NULL,
                "confirmed_at": DATE_TIME_OR_NULL,
                "unsubscribed_at": DATE_TIME_OR_NULL,
                "subscriptions": {"type": "array", "items": _ref("Subscription")},
                "consent": {"type": "array", "items": _ref("ConsentEvent")},
            }
        ),
        "Update": _object(
            {
                "id": {"type": "integer"},
                "slug": STRING_OR_NULL,
                "title": {"type": "string"},
                "summary": {"type": "string"},
                "body": {"type": "string"},
                "topic": {"type": "string"},
                "areas": {"type": "array", "items": {"enum": list(AREAS)}},
                "services": {"type": "array", "items": {"enum": list(SERVICES)}},
                "link": STRING_OR_NULL,
                "status": {"enum": ["draft", "published"]},
                "published_at": DATE_TIME_OR_NULL,
            }
        ),
    }


def openapi_document(base_url: str) -> dict:
    issue_id = _id_param("issue_id")
    issue_ok = {"200": {"description": "The issue", **_json(_ref("Issue"))}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trust Matters mailer API",
            "version": "1",
            "description": "Manage newsletter issues, segments, subscribers and progress updates, and read delivery "
            "progress. Authenticate with 'Authorization: Bearer <token>' (create one with "
            "`mailer token create --name NAME`). JSON bodies may nest at most 32 deep and be at most 2 MB.",
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        },
        "paths": {
            "/topics": {
                "get": _op(
                    "List topics people can subscribe to",
                    {"200": {"description": "Topics", **_json({"type": "array", "items": _ref("Topic")})}},
                    (401,),
                )
            },
            "/issues": {
                "post": _op(
                    "Create a draft issue",
                    {"201": {"description": "Created", **_json(_ref("Issue"))}},
                    (400, 401, 413, 415),
                    body=_json(_ref("IssueInput")),
                )
            },
            "/issues/{issue_id}": {
                "get": _op(
                    "An issue with delivery counts; status becomes 'sent' when every delivery is final",
                    issue_ok,
                    (401, 404),
                    [issue_id],
                )
            },
            **{
                f"/issues/{{issue_id}}/{action}": {"post": _op(summary, issue_ok, errors, [issue_id])}
                for action, summary, errors in (
                    ("submit", "Submit a draft for review (editor)", (401, 404, 409)),
                    ("approve", "Approve an issue in review (publisher)", (401, 403, 404, 409)),
                    ("unschedule", "Take a scheduled issue back to approved", (401, 403, 404, 409)),
                    ("pause", "Pause a send: nobody else gets it until it is resumed", (401, 403, 404, 409)),
                    ("resume", "Resume a paused send: only recipients not yet sent to get it", (401, 403, 404, 409)),
                    (
                        "cancel",
                        "Cancel a send: every recipient not yet sent to becomes 'cancelled'",
                        (401, 403, 404, 409),
                    ),
                )
            },
            "/issues/{issue_id}/deliveries": {
                "get": _op(
                    "Who got the issue and how it went, in pages",
                    {
                        "200": {
                            "description": "A page of deliveries; pass next_after as after for the next",
                            **_json(
                                _object(
                                    {
                                        "deliveries": {"type": "array", "items": _ref("Delivery")},
                                        "next_after": INT_OR_NULL,
                                    }
                                )
                            ),
                        }
                    },
                    (400, 401, 403, 404),
                    [
                        issue_id,
                        {"name": "status", "in": "query", "schema": {"enum": list(DELIVERY_STATUSES)}},
                        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": BIG}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                )
            },
            "/issues/{issue_id}/test": {
                "post": _op(
                    "Send a test of the issue, marked [TEST], to up to 10 addresses",
                    {
                        "202": {
                            "description": "Queued",
                            **_json(
                                _object(
                                    {
                                        "id": {"type": "integer"},
                                        "to": {"type": "array", "items": {"type": "string", "format": "email"}},
                                    }
                                )
                            ),
                        }
                    },
                    (400, 401, 404, 413, 415, 429),
                    [issue_id],
                    _json(
                        _object(
                            {
                                "to": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 10,
                                    "items": {"type": "string", "format": "email"},
                                }
                            },
                            closed=True,
                        )
                    ),
                )
            },
            "/issues/{issue_id}/schedule": {
                "post": _op(
                    "Schedule an approved issue; a time without an offset is UK time (Europe/London)",
                    issue_ok,
                    (400, 401, 403, 404, 409, 413, 415),
                    [issue_id],
                    _json(
                        _object(
                            {
                                "send_at": {
                                    "type": "string",
                                    "description": "ISO 8601, within the next year",
                                    "examples": ["2026-12-01T09:00"],
                                }
                            },
                            closed=True,
                        )
                    ),
                )
            },
            "/issues/{issue_id}/send": {
                "post": _op(
                    "Send an approved (or scheduled) issue now to the topic's subscribers (and its segment)",
                    {"202": {"description": "Sending started", **_json(_ref("Issue"))}},
                    (401, 403, 404, 409),
                    [issue_id],
                )
            },
            **audience_paths(),
            **content_paths(),
        },
    }


def audience_paths() -> dict:
    """Segments, subscribers, import and export."""
    segment_id = _id_param("segment_id")
    email = {"name": "email", "in": "path", "required": True, "schema": {"type": "string", "format": "email"}}
    slug = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
    fields = {
        "name": {"type": "string", "minLength": 1, "maxLength": 120},
        "description": {"type": "string"},
        "rules": _ref("Rules"),
    }
    segment_input = _object(fields, ["name", "rules"], closed=True)
    segment_change = _object(fields, [], closed=True, description="Only the fields given change")
    segment = _ref("Segment")
    counted = {"allOf": [segment, _object({"count": {"type": "integer", "minimum": 0}})]}
    csv_body = {"content": {"text/csv": {"schema": {"type": "string"}}}}
    non_negative = {"type": "integer", "minimum": 0}
    rows_listed = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["row"],
            "properties": {"row": {"type": "integer"}, "error": {"type": "string"}, "reason": {"type": "string"}},
        },
    }
    import_status = {
        "type": "object",
        "required": ["id", "status", "progress", "rows", "imported", "updated", "unchanged", "skipped", "errors"],
        "properties": {
            "id": {"type": "integer"},
            "import": {"type": "integer", "description": "the id again (as before imports ran in the background)"},
            "status": {"enum": list(IMPORT_STATUSES)},
            "filename": {"type": ["string", "null"]},
            "channel": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "encoding": {"type": "string", "description": "how the file was read: UTF-8 or Windows-1252"},
            "progress": {
                "type": "object",
                "properties": {
                    "rows": non_negative,
                    "last_row": {"type": "integer", "description": "spreadsheet row reached; the header is row 1"},
                    "bytes_read": non_negative,
                    "bytes_total": non_negative,
                    "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                },
            },
            "failure": {"type": ["string", "null"], "description": "why a failed import stopped and what was saved"},
            **{key: non_negative for key in ("rows", "imported", "updated", "unchanged", "skipped", "error_count")},
            "truncated": {"type": "boolean", "description": "more rows to look at than are listed"},
            "errors": rows_listed,
            "skipped_rows": rows_listed,
        },
    }
    csv_ok = {"200": {"description": "CSV, streamed", "content": {"text/csv": {"schema": {"type": "string"}}}}}
    subscriber = _ref("Subscriber")
    subscriber_input = _object(
        {
            "email": {"type": "string", "format": "email"},
            "name": STRING_OR_NULL | {"maxLength": NAME_MAX},
            "area": {"enum": [*AREAS, None], "description": "a slug (or its label, such as 'Isle of Wight')"},
            "audience": {"enum": [*AUDIENCES, None], "description": "a slug (or its label)"},
            "services": {
                "anyOf": [
                    {"type": "array", "items": {"enum": list(SERVICES)}},
                    {"type": "string", "description": "slugs or labels separated by ;"},
                ]
            },
            "subscriptions": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "anyOf": [
                        _object(
                            {"topic": {"enum": TOPIC_SLUGS}, "frequency": {"enum": [*FREQUENCIES, "", None]}},
                            ["topic"],
                            closed=True,
                        ),
                        {"type": "string", "description": "slug or slug:frequency", "examples": ["careers:weekly"]},
                    ]
                },
            },
            "consent": _object(
                {
                    "source": {"type": "string", "minLength": 1, "maxLength": SOURCE_MAX, "description": "where, how"},
                    "date": {"type": ["string", "null"], "description": "YYYY-MM-DD or DD/MM/YYYY, since 2000"},
                    "collected": {
                        "type": "boolean",
                        "description": "true: consent was collected elsewhere, active now; "
                        "false (the default): we email them to confirm",
                    },
                },
                ["source"],
                closed=True,
            ),
        },
        ["email", "subscriptions", "consent"],
        closed=True,
    )
    return {
        "/segments": {
            "get": _op(
                "List segments",
                {"200": {"description": "Segments", **_json({"type": "array", "items": segment})}},
                (401,),
            ),
            "post": _op(
                "Create a segment; unknown fields, ops or values are a 400 naming where",
                {"201": {"description": "Created, with its count", **_json(counted)}},
                (400, 401, 409, 413, 415),
                body=_json(segment_input),
            ),
        },
        "/segments/count": {
            "post": _op(
                "Count the people unsaved rules would match",
                {
                    "200": {
                        "description": "Count",
                        **_json(_object({"count": {"type": "integer", "minimum": 0}})),
                    }
                },
                (400, 401, 413, 415),
                body=_json(_object({"rules": _ref("Rules")}, closed=True)),
            )
        },
        "/segments/{segment_id}": {
            "get": _op("A segment", {"200": {"description": "Segment", **_json(segment)}}, (401, 404), [segment_id]),
            "put": _op(
                "Change a segment",
                {"200": {"description": "Segment", **_json(segment)}},
                (400, 401, 404, 409, 413, 415),
                [segment_id],
                _json(segment_change),
            ),
            "delete": _op(
                "Delete a segment no issue uses", {"204": {"description": "Deleted"}}, (401, 404, 409), [segment_id]
            ),
        },
        "/segments/{segment_id}/count": {
            "get": _op(
                "How many reachable people match the segment now (409: its rules can no longer be used)",
                {
                    "200": {
                        "description": "Count",
                        **_json(_object({"id": {"type": "integer"}, "count": {"type": "integer", "minimum": 0}})),
                    }
                },
                (401, 404, 409),
                [segment_id],
            )
        },
        "/segments/{segment_id}/export": {
            "get": _op("The segment's people as CSV", csv_ok, (401, 403, 404, 409), [segment_id])
        },
        "/topics/{slug}/export": {"get": _op("A topic's subscribers as CSV", csv_ok, (401, 403, 404), [slug])},
        "/subscribers": {
            "post": _op(
                "Add or update a subscriber; active at once only with consent.collected = true",
                {
                    "201": {"description": "Created", **_json(subscriber)},
                    "200": {"description": "Updated", **_json(subscriber)},
                },
                (400, 401, 403, 409, 413, 415),
                body=_json(subscriber_input),
            )
        },
        "/subscribers/{email}": {
            "get": _op(
                "Attributes, subscriptions and consent events",
                {"200": {"description": "Subscriber", **_json(subscriber)}},
                (401, 403, 404),
                [email],
            ),
            "delete": _op(
                "Erase: personal data removed, a hash kept so no import brings it back",
                {"204": {"description": "Erased"}},
                (401, 403, 404, 409),
                [email],
            ),
        },
        "/subscribers/{email}/export": {
            "get": _op(
                "Subject access: everything held about the person",
                {
                    "200": {
                        "description": "All data",
                        **_json(
                            {
                                "allOf": [
                                    subscriber,
                                    _object(
                                        {
                                            "created_at": DATE_TIME,
                                            "confirmation_emails": _object(
                                                dict.fromkeys(("last_requested_at", "last_sent_at"), DATE_TIME_OR_NULL)
                                            ),
                                            "emails_sent": {
                                                "type": "array",
                                                "items": _object(
                                                    {
                                                        "issue": {"type": "integer"},
                                                        "subject": {"type": "string"},
                                                        "status": {"enum": list(DELIVERY_STATUSES)},
                                                        "sent_at": DATE_TIME_OR_NULL,
                                                        "note": STRING_OR_NULL,
                                                    }
                                                ),
                                            },
                                            "suppressed": {
                                                "oneOf": [
                                                    {"type": "null"},
                                                    _object({"reason": {"type": "string"}, "since": DATE_TIME}),
                                                ]
                                            },
                                            "what_we_keep_and_why": {"type": "string"},
                                        }
                                    ),
                                ]
                            }
                        ),
                    }
                },
                (401, 403, 404),
                [email],
            )
        },
        "/subscribers/import": {
            "post": _op(
                "Upload a CSV (email, name, topics, area, audience, services, consent_source, consent_date) for a "
                "worker to import; poll the Location for progress and the report",
                {
                    "202": {
                        "description": "Stored and queued",
                        "headers": {"Location": {"schema": {"type": "string"}, "description": "the import's status"}},
                        **_json(import_status),
                    }
                },
                (400, 401, 403, 415),
                [
                    {
                        "name": "filename",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "shown in reports",
                    },
                    {
                        "name": "consent_source",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": 500},
                        "description": "where consent was given, for rows without a consent_source of their own",
                    },
                ],
                body=csv_body,
            )
        },
        "/subscribers/imports/{import_id}": {
            "get": _op(
                "An import: status, progress, counts so far, the rows to look at and, if it failed, why",
                {"200": {"description": "The import", **_json(import_status)}},
                (401, 403, 404),
                [_id_param("import_id")],
            )
        },
    }


def content_paths() -> dict:
    """Progress updates and digests."""
    update_id = _id_param("update_id")
    update = _ref("Update")
    published = {"allOf": [update, _object({"email_issue": INT_OR_NULL | {"description": "the issue emailing it"}})]}
    update_input = _object(
        {
            "title": {"type": "string", "minLength": 1, "maxLength": inputs.TITLE_MAX},
            "topic": {"enum": TOPIC_SLUGS},
            "summary": {"type": "string", "maxLength": inputs.SUMMARY_MAX},
            "body": {"type": "string", "maxLength": inputs.UPDATE_BODY_MAX, "description": "Markdown"},
            "areas": {"type": "array", "items": {"enum": list(AREAS)}, "description": "empty: everywhere"},
            "services": {"type": "array", "items": {"enum": list(SERVICES)}, "description": "empty: all"},
            "link": {"type": "string", "format": "uri", "description": "http(s)"},
            "publish": {"type": "boolean", "description": "true: publish and send now; default a draft"},
        },
        ["title", "topic"],
        closed=True,
    )
    return {
        "/updates": {
            "get": _op(
                "Updates, newest first (at most 200)",
                {"200": {"description": "Updates", **_json({"type": "array", "items": update})}},
                (401,),
            ),
            "post": _op(
                "Create a progress update (publisher); a draft unless publish is true",
                {"201": {"description": "Created", **_json(published)}},
                (400, 401, 403, 413, 415),
                body=_json(update_input),
            ),
        },
        "/updates/{update_id}": {
            "get": _op("An update", {"200": {"description": "The update", **_json(update)}}, (401, 404), [update_id])
        },
        "/updates/{update_id}/publish": {
            "post": _op(
                "Publish a draft update: archive, feeds, as-it-happens email now, digests later",
                {"200": {"description": "Published", **_json(published)}},
                (401, 403, 404, 409),
                [update_id],
            )
        },
        "/digests/run": {
            "post": _op(
                "Run the weekly or monthly digest for this period now (by a worker); again in the same period sends "
                "nothing more",
                {
                    "202": {
                        "description": "Queued",
                        **_json(
                            _object(
                                {
                                    "frequency": {"enum": ["weekly", "monthly"]},
                                    "period": {"type": "string", "examples": ["2026-W48", "2026-11"]},
                                    "queued": {"const": True},
                                }
                            )
                        ),
                    }
                },
                (400, 401, 403, 413, 415, 503),
                body=_json(_object({"frequency": {"enum": ["weekly", "monthly"]}}, closed=True)),
            )
        },
    }
