"""The functions' environment, read once into typed settings (the template sets every variable).

Globals of the template (tables, region, scenarios) are in `_Common`; each function adds its own.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pbxbridge.domain.scenarios import Scenarios


class _Common(BaseModel):
    # Built when a function reads its own settings: each pays for its model only.
    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)

    calls_table: str = Field(alias="CALLS_TABLE", min_length=1)
    call_events_table: str = Field(alias="CALL_EVENTS_TABLE", min_length=1)
    contacts_table: str = Field(alias="CONTACTS_TABLE", min_length=1)
    directory_table: str | None = Field(default=None, alias="DIRECTORY_TABLE")
    phone_region: str = Field(default="RU", alias="PHONE_REGION", min_length=2, max_length=2)
    # Keys are re-read this often, so a rotated key is picked up without a deploy.
    key_cache_seconds: int = Field(default=300, alias="KEY_CACHE_SECONDS", ge=0)
    missed_call_leads: bool = Field(default=False, alias="SCENARIO_MISSED_CALL_LEADS")
    lead_responsible: str | None = Field(default=None, alias="LEAD_RESPONSIBLE")
    outbound_contacts: bool = Field(default=False, alias="SCENARIO_OUTBOUND_CONTACTS")
    default_crm_user: str | None = Field(default=None, alias="DEFAULT_CRM_USER")

    @field_validator("directory_table", "lead_responsible", "default_crm_user", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # CloudFormation passes an unset optional parameter as "".
        return value or None

    @field_validator("phone_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @property
    def scenarios(self) -> Scenarios:
        return Scenarios(
            missed_call_leads=self.missed_call_leads,
            lead_responsible=self.lead_responsible,
            outbound_contacts=self.outbound_contacts,
            default_crm_user=self.default_crm_user,
        )


class _PbxAccess(BaseModel):
    pbx_url: str = Field(default="", alias="PBX_URL")
    pbx_token_parameter: str = Field(default="/pbxbridge/pbx-token", alias="PBX_TOKEN_PARAMETER", min_length=1)


class WebhookSettings(_Common):
    """What the webhook function needs from its environment."""

    crm_token_parameter: str = Field(alias="CRM_TOKEN_PARAMETER", min_length=1)
    crm_token_previous_parameter: str | None = Field(default=None, alias="CRM_TOKEN_PREVIOUS_PARAMETER")
    directory_cache_seconds: int = Field(default=300, alias="DIRECTORY_CACHE_SECONDS", ge=0)
    # Each push's whole budget for AWS (key, directory, reads, writes), from its arrival in the handler:
    # `contact` is asked while the phone rings (the PBX waits about a second), writes must answer 5xx
    # long before the function's timeout. One attempt may use at most the second figure.
    contact_budget_seconds: float = Field(default=0.8, alias="CONTACT_BUDGET_SECONDS", gt=0, le=5)
    contact_attempt_seconds: float = Field(default=0.4, alias="CONTACT_ATTEMPT_SECONDS", gt=0, le=5)
    write_budget_seconds: float = Field(default=2.5, alias="WRITE_BUDGET_SECONDS", gt=0, le=8)
    write_attempt_seconds: float = Field(default=1.0, alias="WRITE_ATTEMPT_SECONDS", gt=0, le=8)
    # A directory refresh inside a push gets at most this much of the push's budget.
    directory_refresh_seconds: float = Field(default=0.25, alias="DIRECTORY_REFRESH_SECONDS", gt=0, le=5)

    @field_validator("crm_token_previous_parameter", mode="before")
    @classmethod
    def _no_previous_key(cls, value: object) -> object:
        return value or None


class CommandsSettings(_Common, _PbxAccess):
    """What the commands function needs from its environment."""

    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE", min_length=1)
    recordings_bucket: str | None = Field(default=None, alias="RECORDINGS_BUCKET")
    callbacks_table: str | None = Field(default=None, alias="CALLBACKS_TABLE")
    # A click-to-call repeated with the same requestId within this time dials once.
    make_call_idempotency_seconds: int = Field(default=3600, alias="MAKE_CALL_IDEMPOTENCY_SECONDS", ge=60)
    # The widget tokens' signing key (issueWidgetToken); unset, the command answers not_configured.
    widget_token_key_parameter: str | None = Field(default=None, alias="WIDGET_TOKEN_KEY_PARAMETER")

    @field_validator("widget_token_key_parameter", mode="before")
    @classmethod
    def _no_widget_key(cls, value: object) -> object:
        return value or None


class HistorySyncSettings(_Common, _PbxAccess):
    """What history reconciliation needs from its environment."""

    sync_state_table: str = Field(alias="SYNC_STATE_TABLE", min_length=1)
    overlap_minutes: int = Field(default=30, alias="HISTORY_OVERLAP_MINUTES", ge=0)
    # Windows are split further wherever the PBX returns a full page, so they can start wide.
    window_hours: float = Field(default=24, alias="HISTORY_WINDOW_HOURS", gt=0)
    limit: int = Field(default=1000, alias="HISTORY_LIMIT", ge=10)
    first_run_days: int = Field(default=1, alias="HISTORY_FIRST_RUN_DAYS", ge=0)
    # The PBX's named periods (`last_month`) are in the tenant's local time.
    pbx_utc_offset_hours: float = Field(default=3, alias="PBX_UTC_OFFSET_HOURS", ge=-12, le=14)


@lru_cache(maxsize=1)
def webhook_settings() -> WebhookSettings:
    return WebhookSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def commands_settings() -> CommandsSettings:
    return CommandsSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def history_sync_settings() -> HistorySyncSettings:
    return HistorySyncSettings.model_validate(dict(os.environ))
