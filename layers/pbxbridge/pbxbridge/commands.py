"""The commands function: a Lambda Invoke payload (or an IAM-signed `POST /commands`) in, an envelope out.

    {"cmd": "makeCall", "user": "andy", "phone": "+7 910 123-45-67", "requestId": "crm-42"}
    -> {"ok": true, "result": {"call_id": "...", "id_known": true}}
    -> {"ok": false, "error": {"code": "pbx_unavailable", "message": "..."}}

`makeCall` with a `requestId` dials once per id within MAKE_CALL_IDEMPOTENCY_SECONDS (Powertools
idempotency on DynamoDB): the repeat gets the first answer. If the PBX may have dialled but did not
say (a timeout after the request left), that answer is kept too, so a retry never rings twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from pbxbridge.domain.commands import CommandError, CommandService, Pbx
from pbxbridge.pbx import PbxError, PbxUnavailableError
from pbxbridge.pbx.configured import configured_pbx
from pbxbridge.protocol.commands import (
    COMMAND_NAMES,
    PBX_COMMANDS,
    InvalidCommandError,
    MakeCallCommand,
    failure,
    read_command,
    success,
)
from pbxbridge.settings import commands_settings
from pbxbridge.storage.calendar import DynamoCalendarStore
from pbxbridge.storage.callbacks import DynamoCallbackStore
from pbxbridge.storage.calls import DynamoCallStore
from pbxbridge.storage.contacts import DynamoContactStore
from pbxbridge.storage.directory import DynamoDirectoryStore
from pbxbridge.storage.dynamodb import InvalidCursorError, StoreRejectedError, StoreUnavailableError, dynamodb_client
from pbxbridge.storage.s3 import S3RecordingArchive, s3_client

logger = Logger()
metrics = Metrics()

# How an error code reads over HTTP (`POST /commands`); a direct invoke always gets the envelope.
HTTP_STATUS = {
    "invalid_request": 400,
    "invalid_parameters": 400,
    "forbidden": 403,  # the widget's API only: a team route asked by a manager
    "not_found": 404,
    "not_configured": 500,
    "request_in_progress": 409,
    "request_id_reused": 409,
    "invalid_token": 502,
    "wrong_tenant": 502,
    "pbx_error": 502,
    "pbx_unavailable": 503,
    "rate_limited": 429,  # the widget's API only (a per-user limit on click-to-call)
    "unavailable": 503,
}


@dataclass(frozen=True)
class CommandsDependencies:
    service: CommandService
    dial_once: Callable[[MakeCallCommand, Any], dict[str, Any]] | None
    phone_region: str


def _pbx_client() -> Pbx:
    settings = commands_settings()
    return configured_pbx(
        settings.pbx_url,
        settings.pbx_token_parameter,
        settings.phone_region,
        settings.key_cache_seconds,
        settings.pbx_api,
    )


@lru_cache(maxsize=1)
def default_dependencies() -> CommandsDependencies:
    settings = commands_settings()
    client = dynamodb_client()
    service = CommandService(
        pbx=_pbx_client,
        calls=DynamoCallStore(client, settings.calls_table, settings.call_events_table),
        contacts=DynamoContactStore(client, settings.contacts_table),
        region=settings.phone_region,
        directory=DynamoDirectoryStore(client, settings.directory_table) if settings.directory_table else None,
        recordings=S3RecordingArchive(s3_client(), settings.recordings_bucket) if settings.recordings_bucket else None,
        issue_widget_token=_issue_widget_token if settings.widget_token_key_parameter else None,
        callbacks=DynamoCallbackStore(client, settings.callbacks_table) if settings.callbacks_table else None,
        calendars=DynamoCalendarStore(client, settings.directory_table) if settings.directory_table else None,
        default_calendar=settings.working_hours,
        reports=_report_store(client, settings.reports_table),
        scan_calls=DynamoCallStore(client, settings.calls_table, settings.call_events_table).calls_started_between,
        scan_callbacks=(
            DynamoCallbackStore(client, settings.callbacks_table).callbacks_first_missed_between
            if settings.callbacks_table
            else None
        ),
        dnd=_dnd_recorder(client, settings.board_table),
    )
    return CommandsDependencies(service=service, dial_once=_dial_once(service), phone_region=settings.phone_region)


def _report_store(client: Any, table: str | None) -> Any:
    if not table:
        return None
    from pbxbridge.storage.reports import DynamoReportStore  # its domain models: paid where a report is asked

    return DynamoReportStore(client, table)


def _dnd_recorder(client: Any, table: str | None) -> Any:
    if not table:
        return None
    from pbxbridge.storage.board import DynamoBoardStore

    return _Recorded(DynamoBoardStore(client, table))


class _Recorded:
    """The board's DND record, best effort: the PBX has switched already, and the user must hear so
    even when the record fails (the board then shows the state from before until the next read)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def record_dnd(self, login: str, on: bool, at: Any) -> None:
        try:
            self._store.record_dnd(login, on, at)
        except Exception:
            logger.warning("the DND state was not recorded for the board", exc_info=True)
            metrics.add_metric(name="BoardDndNotRecorded", unit=MetricUnit.Count, value=1)


def _issue_widget_token(login: str, ttl: int) -> tuple[str, int]:
    from pbxbridge.keys import fetch_keys_from_ssm
    from pbxbridge.widget_tokens import issue_token

    settings = commands_settings()
    assert settings.widget_token_key_parameter is not None
    # Tokens are signed with the current key only; the authorizer also accepts the previous one.
    key = fetch_keys_from_ssm(settings.widget_token_key_parameter, None, settings.key_cache_seconds)[0]
    return issue_token(login, key, ttl)


def _dial_once(service: CommandService) -> Callable[[MakeCallCommand, Any], dict[str, Any]]:
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    settings = commands_settings()
    config = IdempotencyConfig(
        event_key_jmespath="requestId",
        # The same id with another user, phone or caller id is a caller's bug, not a repeat.
        payload_validation_jmespath="[user, phone, clid]",
        expires_after_seconds=settings.make_call_idempotency_seconds,
    )
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb_client())

    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="request", persistence_store=persistence, config=config, key_prefix="makeCall"
    )
    def dial(request: dict[str, Any], command: MakeCallCommand) -> dict[str, Any]:
        try:
            return success(service.make_call(command))
        except PbxUnavailableError as exc:
            if not exc.request_sent:
                raise  # nothing reached the PBX: not remembered, a retry may dial
            return failure(exc.code, exc.message, dialled="unknown")

    def dial_once(command: MakeCallCommand, context: Any) -> dict[str, Any]:
        if context is not None:
            config.register_lambda_context(context)
        request = {
            "requestId": command.request_id,
            "user": command.user,
            "phone": command.phone.e164,
            "clid": command.clid,
        }
        return dial(request=request, command=command)  # type: ignore[no-any-return]

    return dial_once


def execute(payload: Any, context: Any = None, deps: CommandsDependencies | None = None) -> dict[str, Any]:
    """Run one command and answer the envelope; every failure is an `ok: false` with a code."""
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    deps = deps or default_dependencies()
    name = payload.get("cmd") if isinstance(payload, dict) else None
    label = name if isinstance(name, str) and name in COMMAND_NAMES else "unknown"
    started = time.perf_counter()
    try:
        command = read_command(payload, deps.phone_region)
        if isinstance(command, MakeCallCommand) and command.request_id and deps.dial_once:
            answer = deps.dial_once(command, context)
        else:
            answer = success(deps.service.run(command))
    except InvalidCommandError as exc:
        answer = failure("invalid_request", str(exc))
    except InvalidCursorError as exc:
        answer = failure("invalid_request", str(exc))
    except CommandError as exc:
        answer = failure(exc.code, exc.message)
    except PbxError as exc:
        answer = failure(exc.code, exc.message, **({"status": exc.status} if exc.status else {}))
    except StoreRejectedError as exc:
        logger.warning("DynamoDB refused the request", extra={"command": label, "reason": str(exc)})
        answer = failure("invalid_request", "the data store refused a value of this request")
    except StoreUnavailableError:
        logger.exception("DynamoDB unavailable", extra={"command": label})
        answer = failure("unavailable", "the data store is unavailable; try again")
    except IdempotencyAlreadyInProgressError:
        answer = failure("request_in_progress", "a call with this requestId is being placed")
    except IdempotencyValidationError:
        answer = failure("request_id_reused", "this requestId was used for another call")
    except Exception:
        # Whatever else failed (SSM, the idempotency store, S3), the caller still gets the envelope.
        logger.exception("command failed", extra={"command": label})
        answer = failure("unavailable", "the command could not be done; try again")
    elapsed_ms = (time.perf_counter() - started) * 1000
    outcome = "ok" if answer["ok"] else answer["error"]["code"]
    metrics.add_dimension(name="command", value=label)
    metrics.add_dimension(name="outcome", value=outcome)
    metrics.add_metric(name="Commands", unit=MetricUnit.Count, value=1)
    if label in PBX_COMMANDS:
        metrics.add_metric(name="PbxLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    log = logger.info if answer["ok"] else logger.warning
    log("command answered", extra={"command": label, "outcome": outcome, "ms": round(elapsed_ms, 1)})
    if not answer["ok"] and isinstance(payload, dict) and payload.get("raiseOnError") is True:
        raise CommandFailedError(f"{label}: {answer['error']['code']}: {answer['error']['message']}")
    return answer


class CommandFailedError(RuntimeError):
    """Raised for a request that asked for it (`raiseOnError`), so that a scheduled run fails visibly."""


def handle_command(event: Any, context: Any = None) -> dict[str, Any]:
    """A direct invoke's payload, or an API Gateway HTTP API event for `POST /commands` (IAM-signed)."""
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        return _over_http(event, context)
    return execute(event, context)


def _over_http(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = event.get("body") or ""
    try:
        text = base64.b64decode(body, validate=True).decode() if event.get("isBase64Encoded") else body
        payload = json.loads(text)
    except (ValueError, binascii.Error):
        payload = None  # answered (and counted) as an invalid request
    answer = execute(payload, context)
    status = 200 if answer["ok"] else HTTP_STATUS.get(answer["error"]["code"], 500)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(answer, ensure_ascii=False, default=str),
        "isBase64Encoded": False,
    }
