"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "Invalid input",
        401: "Missing or invalid token",
        403: "The role of this token cannot do this",
        404: "Not found",
        409: "Wrong state",
        415: "Not JSON",
        429: "Too many requests from this token or this address; Retry-After gives the seconds to wait",
    }
    if 401 in codes:  # every call with a token is rate limited
        codes = (*codes, 429)
    responses = {str(code): {"description": text[code], **_json(ERROR)} for code in codes}
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return responses


def openapi_document(base_url: str) -> dict:
    issue_id = {"name": "issue_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trust Matters mailer API",
            "version": "1",
            "description": "Manage newsletter issues and read delivery progress. Authenticate with "
            "'Authorization: Bearer <token>' (create one with `mailer token create --name NAME --for EMAIL`).",
        },
        "servers": [{"url": f"{base_url}/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
                "Topic": {
                    "type": "object",
                    "required": ["slug", "name"],
                    "properties": {
                        "slug": {"type": "string"},
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                    },
                },
                "IssueInput": {
                    "type": "object",
                    "required": ["subject", "topic"],
                    "additionalProperties": False,
                    "properties": {
                        "subject": {"type": "string", "maxLength": 200},
                        "body": {
                            "type": "string",
                            "maxLength": 50000,
                            "description": "Markdown; lists and quotes nest at most 6 deep",
                        },
                        "topic": {"type": "string", "description": "topic slug"},
                        "preheader": {"type": "string", "maxLength": 200},
                        "segment": {"type": "integer", "description": "send only to those who also match this segment"},
                        "blocks": {
                            "type": "array",
                            "description": "instead of body: heading {text}, text {markdown}, image {media, alt, link, "
                            "caption}, button {label, url}, updates {count}, divider; text at most 20,000 characters "
                            "a block and 50,000 in all, lists and quotes nested at most 6 deep",
                            "maxItems": 60,
                            "items": {"type": "object", "required": ["type"]},
                        },
                    },
                },
                "Issue": {
                    "type": "object",
                    "required": ["id", "status", "counts"],
                    "properties": {
                        "id": {"type": "integer"},
                        "subject": {"type": "string"},
                        "preheader": {"type": "string"},
                        "topic": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": [
                                "draft",
                                "in_review",
                                "approved",
                                "scheduled",
                                "sending",
                                "paused",
                                "sent",
                                "cancelled",
                            ],
                        },
                        "recipients": {"type": ["integer", "null"]},
                        "counts": {
                            "type": "object",
                            "properties": {
                                k: {"type": "integer"}
                                for k in ("pending", "sending", "sent", "failed", "bounced", "skipped", "cancelled")
                            },
                        },
                        "created_at": {"type": "string", "format": "date-time"},
                        "send_requested_at": {"type": ["string", "null"], "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    },
                },
            },
        },
        "paths": {
            "/topics": {
                "get": {
                    "summary": "List topics people can subscribe to",
                    "responses": {
                        "200": {
                            "description": "Topics",
                            **_json({"type": "array", "items": {"$ref": "#/components/schemas/Topic"}}),
                        },
                        **_errors(401),
                    },
                }
            },
            "/issues": {
                "post": {
                    "summary": "Create a draft issue",
                    "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/IssueInput"})},
                    "responses": {
                        "201": {"description": "Created", **_json({"$ref": "#/components/schemas/Issue"})},
                        **_errors(400, 401, 415),
                    },
                }
            },
            "/issues/{issue_id}": {
                "get": {
                    "summary": "An issue with delivery counts; status becomes 'sent' when every delivery is final",
                    "parameters": [issue_id],
                    "responses": {
                        "200": {"description": "The issue", **_json({"$ref": "#/components/schemas/Issue"})},
                        **_errors(401, 404),
                    },
                }
            },
            **{
                f"/issues/{{issue_id}}/{action}": {
                    "post": {
                        "summary": summary,
                        "parameters": [issue_id],
                        "responses": {
                            "200": {"description": "The issue", **_json({"$ref": "#/components/schemas/Issue"})},
                            **_errors(401, 403, 404, 409),
                        },
                    }
                }
                for action, summary in (
                    ("submit", "Submit a draft for review (editor)"),
                    ("approve", "Approve an issue in review (publisher)"),
                    ("unschedule", "Take a scheduled issue back to approved"),
                    ("pause", "Pause a send: nobody else gets it until it is resumed"),
                    ("resume", "Resume a paused send: only recipients not yet sent to get it"),
                    ("cancel", "Cancel a send: every recipient not yet sent to becomes 'cancelled'"),
                )
            },
            "/issues/{issue_id}/deliveries": {
                "get": {
                    "summary": "Who got the issue and how it went, in pages",
                    "parameters": [
                        issue_id,
                        {"name": "status", "in": "query", "schema": {"type": "string"}},
                        {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of deliveries; pass next_after as after for the next",
                            **_json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "deliveries": {"type": "array", "items": {"type": "object"}},
                                        "next_after": {"type": ["integer", "null"]},
                                    },
                                }
                            ),
                        },
                        **_errors(400, 401, 404),
                    },
                }
            },
            **audience_paths(),
            **content_paths(),
            "/issues/{issue_id}/test": {
                "post": {
                    "summary": "Send a test of the issue, marked [TEST], to up to 10 addresses",
                    "parameters": [issue_id],
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["to"],
                                "properties": {"to": {"type": "array", "items": {"type": "string"}, "maxItems": 10}},
                            }
                        ),
                    },
                    "responses": {
                        "202": {"description": "Queued", **_json({"type": "object"})},
                        **_errors(400, 401, 404, 415),
                    },
                }
            },
            "/issues/{issue_id}/schedule": {
                "post": {
                    "summary": "Schedule an approved issue; a time without an offset is UK time (Europe/London)",
                    "parameters": [issue_id],
                    "requestBody": {
                        "required": True,
                        **_json(
                            {
                                "type": "object",
                                "required": ["send_at"],
                                "properties": {"send_at": {"type": "string", "examples": ["2026-12-01T09:00"]}},
                            }
                        ),
                    },
                    "responses": {
                        "200": {"description": "The issue", **_json({"$ref": "#/components/schemas/Issue"})},
                        **_errors(400, 401, 403, 404, 409, 415),
                    },
                }
            },
            "/issues/{issue_id}/send": {
                "post": {
                    "summary": "Send an approved (or scheduled) issue now to the topic's subscribers",
                    "parameters": [issue_id],
                    "responses": {
                        "202": {"description": "Sending started", **_json({"$ref": "#/components/schemas/Issue"})},
                        **_errors(401, 403, 404, 409),
                    },
                }
            },
        },
    }


def _op(summary: str, ok: dict, errors: tuple[int, ...], params=(), body: dict | None = None) -> dict:
    op = {"summary": summary, "responses": {**ok, **_errors(*errors)}}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True, **body}
    return op


def audience_paths() -> dict:
    """Segments, subscribers, import and export."""
    segment_id = {"name": "segment_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    email = {"name": "email", "in": "path", "required": True, "schema": {"type": "string", "format": "email"}}
    slug = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
    condition = {
        "type": "object",
        "required": ["field", "op", "value"],
        "additionalProperties": False,
        "properties": {
            "field": {"enum": ["topic", "area", "audience", "service", "frequency", "subscribed_at", "confirmed_at"]},
            "op": {"enum": ["is", "is_not", "in", "not_in", "before", "after"]},
            "value": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        },
    }
    rules = {
        "description": '{"all": [...]} or {"any": [...]}, nestable; leaves are conditions',
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": {
            key: {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [condition, {"type": "object", "description": "a nested group"}]},
            }
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
    }
    segment_input = {
        "type": "object",
        "required": ["name", "rules"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "rules": rules},
    }
    obj = {"type": "object"}
    csv_body = {"content": {"text/csv": {"schema": {"type": "string"}}}}
    counted = {"type": "integer", "minimum": 0}
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
            "status": {"enum": ["queued", "running", "finished", "failed"]},
            "filename": {"type": ["string", "null"]},
            "channel": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
            "encoding": {"type": "string", "description": "how the file was read: UTF-8 or Windows-1252"},
            "progress": {
                "type": "object",
                "properties": {
                    "rows": counted,
                    "last_row": {"type": "integer", "description": "spreadsheet row reached; the header is row 1"},
                    "bytes_read": counted,
                    "bytes_total": counted,
                    "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                },
            },
            "failure": {"type": ["string", "null"], "description": "why a failed import stopped and what was saved"},
            **{key: counted for key in ("rows", "imported", "updated", "unchanged", "skipped", "error_count")},
            "truncated": {"type": "boolean", "description": "more rows to look at than are listed"},
            "errors": rows_listed,
            "skipped_rows": rows_listed,
        },
    }
    csv_ok = {"200": {"description": "CSV, streamed", "content": {"text/csv": {"schema": {"type": "string"}}}}}
    subscriber_input = {
        "type": "object",
        "required": ["email", "subscriptions", "consent"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string"},
            "area": {"enum": ["isle-of-wight", "hampshire", "southampton", "portsmouth", "elsewhere"]},
            "audience": {"enum": ["patient", "carer", "staff", "partner", "community-group", "other"]},
            "services": {"type": "array", "items": {"enum": ["community", "mental-health", "learning-disability"]}},
            "subscriptions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["topic"],
                    "properties": {
                        "topic": {"type": "string"},
                        "frequency": {"enum": ["immediately", "weekly", "monthly"]},
                    },
                },
            },
            "consent": {
                "type": "object",
                "required": ["source"],
                "properties": {
                    "source": {"type": "string", "description": "where and how consent was given"},
                    "date": {"type": "string", "description": "YYYY-MM-DD or DD/MM/YYYY"},
                    "collected": {
                        "type": "boolean",
                        "description": "true: consent was collected elsewhere, active now; "
                        "false: we email them to confirm",
                    },
                },
            },
        },
    }
    return {
        "/segments": {
            "get": _op("List segments", {"200": {"description": "Segments", **_json({"type": "array"})}}, (401,)),
            "post": _op(
                "Create a segment; unknown fields, ops or values are a 400 naming where",
                {"201": {"description": "Created, with its count", **_json(obj)}},
                (400, 401, 409, 415),
                body=_json(segment_input),
            ),
        },
        "/segments/count": {
            "post": _op(
                "Count the people unsaved rules would match",
                {
                    "200": {
                        "description": "Count",
                        **_json({"type": "object", "properties": {"count": {"type": "integer"}}}),
                    }
                },
                (400, 401, 415),
                body=_json({"type": "object", "properties": {"rules": rules}}),
            )
        },
        "/segments/{segment_id}": {
            "get": _op("A segment", {"200": {"description": "Segment", **_json(obj)}}, (401, 404), [segment_id]),
            "put": _op(
                "Change a segment",
                {"200": {"description": "Segment", **_json(obj)}},
                (400, 401, 404, 409, 415),
                [segment_id],
                _json(segment_input),
            ),
            "delete": _op(
                "Delete a segment no issue uses", {"204": {"description": "Deleted"}}, (401, 404, 409), [segment_id]
            ),
        },
        "/segments/{segment_id}/count": {
            "get": _op(
                "How many reachable people match the segment now",
                {
                    "200": {
                        "description": "Count",
                        **_json({"type": "object", "properties": {"count": {"type": "integer"}}}),
                    }
                },
                (401, 404),
                [segment_id],
            )
        },
        "/segments/{segment_id}/export": {
            "get": _op("The segment's people as CSV", csv_ok, (401, 403, 404), [segment_id])
        },
        "/topics/{slug}/export": {"get": _op("A topic's subscribers as CSV", csv_ok, (401, 403, 404), [slug])},
        "/subscribers": {
            "post": _op(
                "Add or update a subscriber; active at once only with consent.collected = true",
                {"201": {"description": "Created", **_json(obj)}, "200": {"description": "Updated", **_json(obj)}},
                (400, 401, 403, 409, 415),
                body=_json(subscriber_input),
            )
        },
        "/subscribers/{email}": {
            "get": _op(
                "Attributes, subscriptions and consent events",
                {"200": {"description": "Subscriber", **_json(obj)}},
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
                {"200": {"description": "All data", **_json(obj)}},
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
                [{"name": "import_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            )
        },
    }


def content_paths() -> dict:
    """Progress updates and digests."""
    update_id = {"name": "update_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    obj = {"type": "object"}
    update_input = {
        "type": "object",
        "required": ["title", "topic"],
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "maxLength": 200},
            "topic": {"type": "string"},
            "summary": {"type": "string"},
            "body": {
                "type": "string",
                "maxLength": 20000,
                "description": "Markdown; lists and quotes nest at most 6 deep",
            },
            "areas": {"type": "array", "items": {"type": "string"}, "description": "empty: everywhere"},
            "services": {"type": "array", "items": {"type": "string"}, "description": "empty: all"},
            "link": {"type": "string"},
            "publish": {"type": "boolean", "description": "true: publish and send now; default a draft"},
        },
    }
    return {
        "/updates": {
            "get": _op(
                "Updates, newest first", {"200": {"description": "Updates", **_json({"type": "array"})}}, (401,)
            ),
            "post": _op(
                "Create a progress update (publisher); a draft unless publish is true",
                {"201": {"description": "Created", **_json(obj)}},
                (400, 401, 403, 415),
                body=_json(update_input),
            ),
        },
        "/updates/{update_id}": {
            "get": _op("An update", {"200": {"description": "The update", **_json(obj)}}, (401, 404), [update_id])
        },
        "/updates/{update_id}/publish": {
            "post": _op(
                "Publish a draft update: archive, feeds, as-it-happens email now, digests later",
                {"200": {"description": "Published", **_json(obj)}},
                (401, 403, 404, 409),
                [update_id],
            )
        },
        "/digests/run": {
            "post": _op(
                "Run the weekly or monthly digest for this period now (by a worker); again in the same period sends "
                "nothing more",
                {"202": {"description": "Queued", **_json(obj)}},
                (400, 401, 403, 415),
                body=_json(
                    {
                        "type": "object",
                        "required": ["frequency"],
                        "properties": {"frequency": {"enum": ["weekly", "monthly"]}},
                    }
                ),
            )
        },
    }
