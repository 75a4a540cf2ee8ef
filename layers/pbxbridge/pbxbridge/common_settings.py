"""What every function reads from its environment: the template's globals (tables, region, scenarios).

The base of each function's settings (settings.py: the webhook's; function_settings.py: the commands'
and reconciliation's), below both, so that neither needs the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    # The webhook reads this module at init: the write path's scenarios are imported where they are
    # used (their classes cost a cold `contact` ~3 ms).
    from pbxbridge.domain.scenarios import Scenarios


def _blank_is_none(value: object) -> object:
    # CloudFormation passes an unset optional parameter as "".
    return value or None


# An optional setting: unset ("") is None.
OptionalSetting = Annotated[str | None, BeforeValidator(_blank_is_none)]


class CommonSettings(BaseModel):
    """The template's Globals: every function has these variables."""

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
    # The tenant's first working calendar, compact (`Europe/Moscow;mon-fri 09:00-18:00`), read where it
    # is used: a mistyped one must not stop the functions that never need it.
    working_hours: OptionalSetting = Field(default=None, alias="WORKING_HOURS")

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
