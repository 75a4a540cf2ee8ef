"""The template registers every call event's schema (schemas/events/*.json, one source) in its
EventBridge schema registry, in the draft 4 form the registry's code bindings read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from local.event_schemas import SCHEMAS_DIR, logical_id, registry_document, schema_files, template_block
from local.template import TEMPLATE_PATH, Template, load_template
from pbxbridge.call_events import EVENT_TYPES, CallMissed


@pytest.fixture(scope="module")
def registered() -> dict[str, dict[str, Any]]:
    return Template().resources("AWS::EventSchemas::Schema")


def test_every_schema_file_is_registered_with_its_content(registered: dict[str, dict[str, Any]]) -> None:
    files = schema_files()
    assert set(files) == set(EVENT_TYPES)  # the files are the models' (a test in test_call_events keeps them current)
    stale = "the template's event schemas differ from schemas/events: run `make openapi`"
    assert {logical_id(name) for name in files} == set(registered), stale
    for detail_type, path in files.items():
        props = registered[logical_id(detail_type)]["Properties"]
        assert props["RegistryName"] == {"Fn::GetAtt": ["EventSchemaRegistry", "RegistryName"]}
        assert props["Type"] == "JSONSchemaDraft4"
        assert props["SchemaName"] == f"pbxbridge@{detail_type}"
        expected = registry_document(detail_type, json.loads(path.read_text(encoding="utf-8")))
        assert json.loads(props["Content"]) == expected, stale


def test_the_generated_block_is_what_the_template_holds() -> None:
    assert template_block() in TEMPLATE_PATH.read_text(encoding="utf-8"), "run `make openapi`"


def test_a_new_schema_file_is_one_more_registered_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new event does: add its file, regenerate, registered beside the others."""
    from local import event_schemas

    for path in SCHEMAS_DIR.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    new_type = "CallTransferred"  # no such event yet: the template cannot already hold it
    assert new_type not in EVENT_TYPES
    (tmp_path / f"{new_type}.json").write_text(json.dumps({"type": "object", "title": new_type}))
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(event_schemas, "SCHEMAS_DIR", tmp_path)
    assert event_schemas.rewrite_template(template) is True
    schemas = Template(body=load_template(template)).resources("AWS::EventSchemas::Schema")
    assert set(schemas) == {logical_id(name) for name in [*EVENT_TYPES, new_type]}
    assert schemas[logical_id(new_type)]["Properties"]["SchemaName"] == f"pbxbridge@{new_type}"
    assert event_schemas.rewrite_template(template) is False  # idempotent


@pytest.mark.parametrize("detail_type", sorted(EVENT_TYPES))
def test_registered_schemas_are_draft4_and_describe_the_delivered_event(
    detail_type: str, registered: dict[str, dict[str, Any]]
) -> None:
    schema = json.loads(registered[logical_id(detail_type)]["Properties"]["Content"])
    jsonschema.Draft4Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert "$defs" not in json.dumps(schema)
    assert schema["x-amazon-events-source"] == "pbxbridge"
    assert schema["x-amazon-events-detail-type"] == detail_type


def test_a_published_event_validates_and_a_wrong_one_does_not(registered: dict[str, dict[str, Any]]) -> None:
    schema = json.loads(registered[logical_id("CallMissed")]["Properties"]["Content"])
    detail = json.loads(
        CallMissed(id="c1/CallMissed", callid="c1", occurred_at="2026-11-28T10:00:00Z").model_dump_json()  # type: ignore[arg-type]
    )
    event = {
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "CallMissed",
        "source": "pbxbridge", "account": "123456789012", "time": "2026-11-28T10:00:00Z",
        "region": "eu-central-1", "resources": [], "detail": detail,
    }  # fmt: skip
    jsonschema.Draft4Validator(schema).validate(event)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({**event, "detail": {**detail, "unknown": 1}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate({**event, "detail-type": "CallAnswered"})


def test_draft4_conversion_of_nested_models() -> None:
    converted = registry_document(
        "X",
        {"$defs": {"Leg": {"properties": {"kind": {"const": "a"}}}}, "properties": {"leg": {"$ref": "#/$defs/Leg"}}},
    )
    assert converted["definitions"]["Leg"] == {"properties": {"kind": {"enum": ["a"]}}}
    assert converted["definitions"]["X"]["properties"]["leg"] == {"$ref": "#/definitions/Leg"}
    jsonschema.Draft4Validator.check_schema(converted)
