"""The functions' environment, read once into typed settings (the template sets every variable).

Globals of the template (tables, region, scenarios) are in `_Common`; each function adds its own. The
webhook's are here; the commands' and reconciliation's in function_settings.py, off the webhook's import path.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    # The webhook reads this module at init: the write path's scenarios and the other functions'
    # settings are imported where they are used (their classes cost a cold `contact` ~3 ms).
    from pbxbridge.domain.scenarios import Scenarios
    from pbxbridge.function_settings import CommandsSettings, HistorySyncSettings


def _blank_is_none(value: object) -> object:
    # CloudFormation passes an unset optional parameter as "".
    return value or None


# An optional setting: unset ("") is None.
OptionalSetting = Annotated[str | None, BeforeValidator(_blank_is_none)]


class _Common(BaseModel):
    # Built when a function reads its own settings: each pays for its model only.
    model_config = ConfigDict(frozen=True, populate_by_name=True, defer_build=True)

    calls_table: str = Field(alias="CALLS_TABLE", min_length=1)
    call_events_table: str = Field(alias="CALL_EVENTS_TABLE", min_length=1)
    contacts_table: str = Field(alias="CONTACTS_TABLE", min_length=1)
    directory_table: OptionalSetting = Field(default=None, alias="DIRECTORY_TABLE")
    phone_region: str = Field(default="RU", alias="PHONE_REGION", min_length=2, max_length=2)
    # Keys are re-read this often, so a rotated key is picked up without a deploy.
    key_cache_seconds: int = Field(default=300, alias="KEY_CACHE_SECONDS", ge=0)
    missed_call_leads: bool = Field(default=False, alias="SCENARIO_MISSED_CALL_LEADS")
    lead_responsible: OptionalSetting = Field(default=None, alias="LEAD_RESPONSIBLE")
    outbound_contacts: bool = Field(default=False, alias="SCENARIO_OUTBOUND_CONTACTS")
    default_crm_user: OptionalSetting = Field(default=None, alias="DEFAULT_CRM_USER")

    @field_validator("phone_region")
    @classmethod
    def _upper_region(cls, value: str) -> str:
        return value.upper()

    @property
    def scenarios(self) -> Scenarios:
        from pbxbridge.domain.scenarios import Scenarios

        return Scenarios(
            missed_call_leads=self.missed_call_leads,
            lead_responsible=self.lead_responsible,
            outbound_contacts=self.outbound_contacts,
            default_crm_user=self.default_crm_user,
        )


class WebhookSettings(_Common):
    """What the webhook function needs from its environment."""

    crm_token_parameter: str = Field(alias="CRM_TOKEN_PARAMETER", min_length=1)
    crm_token_previous_parameter: OptionalSetting = Field(default=None, alias="CRM_TOKEN_PREVIOUS_PARAMETER")
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
    # Where `cmd=webhook` pushes are kept (newer tenants: a phone lost its SIP registration, ...).
    webhook_pushes_table: OptionalSetting = Field(default=None, alias="WEBHOOK_PUSHES_TABLE")


@lru_cache(maxsize=1)
def webhook_settings() -> WebhookSettings:
    return WebhookSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def commands_settings() -> CommandsSettings:
    from pbxbridge.function_settings import CommandsSettings

    return CommandsSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def history_sync_settings() -> HistorySyncSettings:
    from pbxbridge.function_settings import HistorySyncSettings

    return HistorySyncSettings.model_validate(dict(os.environ))
