"""The local stack's data across restarts (local.snapshot), and its short log (local.logs).

Apart from the stack's own tests: these reset the embedded AWS, which every server in the process shares."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import requests

from local.aws import create_queues_buckets_and_buses, create_tables
from local.stack import data_file_from_environment
from local.template import Template


def test_the_data_survives_a_restart(aws: dict[str, str], moto_url: str, template: Template, tmp_path: Path) -> None:
    from local.aws import client
    from local.snapshot import restore, save

    create_queues_buckets_and_buses(template, moto_url)
    tables = list(aws.values())
    buckets = [template.physical_name(b) for b in template.resources("AWS::S3::Bucket")]
    dynamodb, s3 = client("dynamodb", moto_url), client("s3", moto_url)
    contact = {"phone": {"S": "+79101234567"}, "contact_name": {"S": "Рога"}, "blob": {"B": b"\x00\xff"}}
    dynamodb.put_item(TableName=aws["ContactsTable"], Item=contact)
    for index in range(30):  # more than one batch
        dynamodb.put_item(TableName=aws["CallsTable"], Item={"callid": {"S": f"c{index}"}, "duration": {"N": "5"}})
    s3.put_object(Bucket=buckets[0], Key="recordings/a.mp3", Body=b"ID3\x00")
    path = tmp_path / "data" / "state.json"
    save(path, moto_url, tables, buckets)

    requests.post(f"{moto_url}/moto-api/reset", timeout=5).raise_for_status()
    create_tables(template, moto_url)
    create_queues_buckets_and_buses(template, moto_url)
    report = restore(path, moto_url, tables, buckets)
    assert (report.items[aws["CallsTable"]], report.items[aws["ContactsTable"]], report.objects) == (30, 1, 1)
    assert dynamodb.get_item(TableName=aws["ContactsTable"], Key={"phone": {"S": "+79101234567"}})["Item"] == contact
    assert dynamodb.scan(TableName=aws["CallsTable"], Select="COUNT")["Count"] == 30
    assert s3.get_object(Bucket=buckets[0], Key="recordings/a.mp3")["Body"].read() == b"ID3\x00"
    assert restore(tmp_path / "none.json", moto_url, tables, buckets).items == {}


def test_fresh_starts_empty_and_keeps_one_step_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    monkeypatch.setenv("LOCAL_DATA", str(path))
    monkeypatch.delenv("FRESH", raising=False)
    assert data_file_from_environment() == path
    assert path.exists()
    monkeypatch.setenv("FRESH", "1")
    assert data_file_from_environment() == path
    assert not path.exists()
    assert (tmp_path / "state.previous.json").exists()
    monkeypatch.setenv("LOCAL_DATA", "none")
    assert data_file_from_environment() is None


# The log


def test_the_short_log_is_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    from aws_lambda_powertools import Logger

    from local.logs import ShortFormatter, _WithoutMetrics

    logger = Logger(service="short-log-test")
    handler = logging.getLogger("short-log-test").handlers[0]
    handler.setFormatter(ShortFormatter(handler.formatter))  # type: ignore[arg-type]
    logger.append_keys(function_name="WebhookFunction")  # passed through to Powertools' formatter
    logger.set_correlation_id("call-1")
    logger.info("push stored", extra={"cmd": "event", "type": "INCOMING", "duplicate": False, "absent": None})
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert line.endswith("WebhookFunction      push stored  cmd=event type=INCOMING duplicate=False callid=call-1")
    filtered = _WithoutMetrics(sys.stdout)
    print('{"_aws": {"CloudWatchMetrics": []}}', file=filtered)
    print("kept", file=filtered)
    assert capsys.readouterr().out == "kept\n"
