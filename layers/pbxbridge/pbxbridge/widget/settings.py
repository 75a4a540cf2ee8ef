"""The widget functions' environment, read once into typed settings (the template sets every variable)."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

_FRAME_SOURCE = (
    r"('self'|'none'|https://([*][.])?[A-Za-z0-9.-]+(:[0-9]+)?|http://(localhost|127[.]0[.]0[.]1)(:[0-9]+)?)"
)
FRAME_ANCESTORS_PATTERN = rf"^{_FRAME_SOURCE}( {_FRAME_SOURCE})*$"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # CloudFormation passes an unset optional parameter as "".
        return None if value == "" else value


class TokenKeySettings(_Settings):
    """Where the widget tokens' signing keys are (SSM SecureStrings)."""

    key_parameter: str = Field(alias="WIDGET_TOKEN_KEY_PARAMETER", min_length=1)
    previous_key_parameter: str | None = Field(default=None, alias="WIDGET_TOKEN_KEY_PREVIOUS_PARAMETER")
    key_cache_seconds: int = Field(default=300, alias="KEY_CACHE_SECONDS", ge=0)


class SocketSettings(_Settings):
    connections_table: str = Field(alias="CONNECTIONS_TABLE", min_length=1)
    directory_table: str | None = Field(default=None, alias="DIRECTORY_TABLE")
    phone_region: str = Field(default="RU", alias="PHONE_REGION", min_length=2, max_length=2)
    directory_cache_seconds: int = Field(default=300, alias="DIRECTORY_CACHE_SECONDS", ge=0)


class CardSettings(_Settings):
    calls_table: str = Field(alias="CALLS_TABLE", min_length=1)
    call_events_table: str = Field(alias="CALL_EVENTS_TABLE", min_length=1)  # (the card reads no timeline)
    contacts_table: str = Field(alias="CONTACTS_TABLE", min_length=1)
    directory_table: str | None = Field(default=None, alias="DIRECTORY_TABLE")
    connections_table: str = Field(alias="CONNECTIONS_TABLE", min_length=1)
    callbacks_table: str | None = Field(default=None, alias="CALLBACKS_TABLE")
    board_table: str | None = Field(default=None, alias="BOARD_TABLE")  # the team's live board
    # The management API of the WebSocket stage: https://{api-id}.execute-api.{region}.amazonaws.com/{stage}
    socket_endpoint: str = Field(alias="WIDGET_SOCKET_ENDPOINT", min_length=1)
    crm_record_url_template: str | None = Field(default=None, alias="CRM_RECORD_URL_TEMPLATE")
    phone_region: str = Field(default="RU", alias="PHONE_REGION", min_length=2, max_length=2)
    directory_cache_seconds: int = Field(default=300, alias="DIRECTORY_CACHE_SECONDS", ge=0)


class WidgetApiSettings(_Settings):
    # makeCall per user per minute (a person clicks a few; a script or a leaked token would dial on). 0: no limit.
    calls_per_minute: int = Field(default=10, alias="WIDGET_CALLS_PER_MINUTE", ge=0)
    # The template's CallbackSlaMinutes: the board colours call-backs by it (business minutes).
    callback_sla_minutes: int = Field(default=15, alias="CALLBACK_SLA_MINUTES", ge=1)


class PageSettings(_Settings):
    socket_url: str = Field(alias="WIDGET_SOCKET_URL", min_length=1)
    # Who may embed the widget in an iframe (CSP frame-ancestors), e.g. "https://crm.example".
    # Origins only (the template's AllowedPattern): never * or a bare scheme, which would let any
    # page frame click-to-call and the DND switch.
    frame_ancestors: str = Field(default="'self'", alias="WIDGET_FRAME_ANCESTORS", pattern=FRAME_ANCESTORS_PATTERN)
    # Where presigned recording URLs point (CSP media-src): one origin or several, space-separated.
    media_origin: str | None = Field(default=None, alias="WIDGET_MEDIA_ORIGIN")


@lru_cache(maxsize=1)
def token_key_settings() -> TokenKeySettings:
    return TokenKeySettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def socket_settings() -> SocketSettings:
    return SocketSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def card_settings() -> CardSettings:
    return CardSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def widget_api_settings() -> WidgetApiSettings:
    return WidgetApiSettings.model_validate(dict(os.environ))


@lru_cache(maxsize=1)
def page_settings() -> PageSettings:
    return PageSettings.model_validate(dict(os.environ))


def clear_caches() -> None:
    for cache in (token_key_settings, socket_settings, card_settings, widget_api_settings, page_settings):
        cache.cache_clear()
