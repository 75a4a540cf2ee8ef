"""The functions' environment, read once into typed settings (the template sets every variable).

Globals of the template (tables, region, scenarios) are in `CommonSettings` (common_settings.py); each
function adds its own. The webhook's are here; the commands' and reconciliation's in function_settings.py,
off the webhook's import path. Every function reads its settings through this module's functions.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import Field

from pbxbridge.common_settings import CommonSettings, OptionalSetting

if TYPE_CHECKING:
    # The other functions' settings are imported where they are read, off the webhook's import path.
    from pbxbridge.function_settings import CommandsSettings, HistorySyncSettings


class WebhookSettings(CommonSettings):
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
