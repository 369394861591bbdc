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
    }
    return {str(code): {"description": text[code], **_json(ERROR)} for code in codes}


def openapi_document(base_url: str) -> dict:
    issue_id = {"name": "issue_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Trust Matters mailer API",
            "version": "1",
            "description": "Manage newsletter issues and read delivery progress. Authenticate with "
            "'Authorization: Bearer <token>' (create one with `mailer token create --name NAME`).",
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
                    "required": ["subject", "body", "topic"],
                    "additionalProperties": False,
                    "properties": {
                        "subject": {"type": "string", "maxLength": 200},
                        "body": {"type": "string", "description": "Markdown"},
                        "topic": {"type": "string", "description": "topic slug"},
                        "preheader": {"type": "string", "maxLength": 200},
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
                        "status": {"type": "string", "enum": ["draft", "sending", "paused", "sent", "cancelled"]},
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
            "/issues/{issue_id}/send": {
                "post": {
                    "summary": "Send a draft to the topic's active subscribers",
                    "parameters": [issue_id],
                    "responses": {
                        "202": {"description": "Sending started", **_json({"$ref": "#/components/schemas/Issue"})},
                        **_errors(401, 403, 404, 409),
                    },
                }
            },
        },
    }
