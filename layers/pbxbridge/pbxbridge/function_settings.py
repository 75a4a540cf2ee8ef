"""The settings of the functions that talk to the PBX (commands, reconciliation): read through
`pbxbridge.settings.commands_settings` and `history_sync_settings`. Their own module, so the webhook's
cold start does not build their classes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from pbxbridge.common_settings import CommonSettings, OptionalSetting
from pbxbridge.pbx.models import PbxApiKind


def _api_choice(value: object) -> object:
    # Unset (CloudFormation's "") is the default; `V1` and `Auto` are meant as `v1` and `auto`.
    return (value.strip().lower() or PbxApiKind.AUTO.value) if isinstance(value, str) else value


class _PbxAccess(BaseModel):
    pbx_url: str = Field(default="", alias="PBX_URL")
    # The SecureString holds the PBX's key for either API (legacy `token` or v1 `X-API-KEY`).
    pbx_token_parameter: str = Field(default="/pbxbridge/pbx-token", alias="PBX_TOKEN_PARAMETER", min_length=1)
    # Which of the PBX's CRM APIs: `legacy`, `v1`, or `auto` (read from PBX_URL, else asked of the PBX).
    pbx_api: Annotated[PbxApiKind, BeforeValidator(_api_choice)] = Field(default=PbxApiKind.AUTO, alias="PBX_API")


class CommandsSettings(CommonSettings, _PbxAccess):
    """What the commands function needs from its environment."""

    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    recordings_bucket: str | None = Field(default=None, alias="RECORDINGS_BUCKET")
    callbacks_table: str | None = Field(default=None, alias="CALLBACKS_TABLE")
    reports_table: str | None = Field(default=None, alias="REPORTS_TABLE")
    # The team's live board: set_dnd and get_dnd record the state there; the widget's API reads it.
    board_table: str | None = Field(default=None, alias="BOARD_TABLE")
    # A click-to-call repeated with the same requestId within this time dials once.
    make_call_idempotency_seconds: int = Field(default=3600, alias="MAKE_CALL_IDEMPOTENCY_SECONDS", ge=60)
    # The widget tokens' signing key (issueWidgetToken); unset, the command answers not_configured.
    widget_token_key_parameter: OptionalSetting = Field(default=None, alias="WIDGET_TOKEN_KEY_PARAMETER")


class HistorySyncSettings(CommonSettings, _PbxAccess):
    """What history reconciliation needs from its environment."""

    sync_state_table: str = Field(alias="SYNC_STATE_TABLE", min_length=1)
    overlap_minutes: int = Field(default=30, alias="HISTORY_OVERLAP_MINUTES", ge=0)
    # Windows are split further wherever the PBX returns a full page, so they can start wide.
    window_hours: float = Field(default=24, alias="HISTORY_WINDOW_HOURS", gt=0)
    limit: int = Field(default=1000, alias="HISTORY_LIMIT", ge=10)
    first_run_days: int = Field(default=1, alias="HISTORY_FIRST_RUN_DAYS", ge=0)
    # The PBX's named periods (`last_month`) are in the tenant's local time.
    pbx_utc_offset_hours: float = Field(default=3, alias="PBX_UTC_OFFSET_HOURS", ge=-12, le=14)


class OverdueSettings(CommonSettings):
    """What the overdue call-backs checker needs from its environment."""

    callbacks_table: str = Field(alias="CALLBACKS_TABLE", min_length=1)
    # The template's CallbackSlaMinutes: business minutes (wall minutes without a calendar).
    sla_minutes: int = Field(default=15, alias="CALLBACK_SLA_MINUTES", ge=1)
