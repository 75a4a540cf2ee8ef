"""The webhook's OpenAPI document, generated from the protocol models (`make openapi`).

The document is kept in the repo (openapi/webhook.json) and a test fails when it drifts.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from pbxbridge import __version__
from pbxbridge.protocol.webhook import (
    INVALID_PARAMETERS,
    INVALID_TOKEN,
    ContactAnswer,
    ContactQuery,
    EventPush,
    HistoryPush,
    RatingPush,
)

_PUSHES: dict[str, type[BaseModel]] = {
    "history": HistoryPush,
    "event": EventPush,
    "contact": ContactQuery,
    "rating": RatingPush,
}


def _push_schema(cmd: str, model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    schema["properties"] = {
        "cmd": {"type": "string", "const": cmd, "description": "compared case-insensitively"},
        "crm_token": {"type": "string", "description": "the CRM key set in the PBX cabinet"},
        **schema["properties"],
    }
    schema["required"] = ["cmd", "crm_token", *schema.get("required", [])]
    schema["additionalProperties"] = True
    return schema


def _error(example: dict[str, str]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": example}}}


def build_document() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    schemas = {f"{model.__name__}": _push_schema(cmd, model, defs) for cmd, model in _PUSHES.items()}
    schemas.update(defs)
    schemas["ContactAnswer"] = ContactAnswer.model_json_schema()
    schemas["Empty"] = {"type": "object", "maxProperties": 0}
    schemas["Error"] = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    push_ref = {"oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in _PUSHES.values()]}
    operation = {
        "summary": "A push from the PBX: history, event, contact or rating",
        "description": "Form (plain or base64 from API Gateway) or JSON object; a missing Content-Type is "
        "sniffed. Unknown fields are ignored. Bodies over 64 KiB are refused with 413.",
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": push_ref},
                "application/json": {"schema": push_ref},
            },
        },
        "responses": {
            "200": {
                "description": "Stored (`{}`), or the contact for `contact` (`{}` when unknown)",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Empty"},
                                {"$ref": "#/components/schemas/ContactAnswer"},
                            ]
                        }
                    }
                },
            },
            "400": {"description": "Unknown cmd, missing or malformed field", **_error(INVALID_PARAMETERS)},
            "401": {"description": "Missing or wrong crm_token", **_error(INVALID_TOKEN)},
            "413": {"description": "Body over 64 KiB", **_error(INVALID_PARAMETERS)},
            "503": {
                "description": "Not stored; the PBX may retry, reconciliation will fetch it",
                **_error({"error": "Service unavailable"}),
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbxbridge webhook", "version": __version__},
        "paths": {
            "/": {"post": {**operation, "operationId": "pushRoot"}},
            "/pbx": {"post": {**operation, "operationId": "push"}},
        },
        "components": {"schemas": schemas},
    }


def render() -> str:
    return json.dumps(build_document(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
