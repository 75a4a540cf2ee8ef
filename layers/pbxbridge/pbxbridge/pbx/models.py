"""The PBX's answers to our commands, as typed results (tolerant of what live PBXs really send)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _text(value: Any) -> Any:
    # `ext` and `telnum` come as strings or numbers, depending on the tenant.
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


LooseText = Annotated[str | None, BeforeValidator(_text)]


class PbxApiKind(StrEnum):
    """Which of the PBX's two CRM APIs we command it through (`PBX_API`)."""

    LEGACY = "legacy"  # https://<tenant>/sys/crm_api.wcgp: form posts, `token` in the body
    V1 = "v1"  # https://<tenant>/crmapi/v1: JSON, `X-API-KEY`, paged lists
    AUTO = "auto"  # read from the URL, or asked of the PBX once per container


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class PbxAccount(_Answer):
    """A PBX user (`accounts`)."""

    name: str
    real_name: LooseText = Field(default=None, alias="realName")
    ext: LooseText = None
    telnum: LooseText = None
    email: LooseText = None
    # v1 only, and only where the PBX gives it (`with=status`): `online`, `offline`, ...
    presence: LooseText = None
    # v1 only: `user`, `admin`, `group_head`, `restricted_user` (the old API says no role: None).
    role: LooseText = None


class PbxGroup(_Answer):
    """A department (`groups`)."""

    id: Annotated[str, BeforeValidator(_text)]
    real_name: LooseText = Field(default=None, alias="realName")
    ext: LooseText = None


class MakeCallResult(BaseModel):
    """What `makeCall` answered. The id need not equal the `callid` of the webhooks that follow."""

    call_id: str | None = Field(description="the PBX's id for the call, None when its answer had none")
    id_known: bool
    raw: Any = None
    # v1: the caller id the PBX will show, when it says (it may differ from the one asked for).
    clid: str | None = None


class CallerId(_Answer):
    """A number the PBX allows as the caller id of a call (v1 `/caller-ids/telnums`)."""

    telnum: Annotated[str, BeforeValidator(_text)]
    enabled: bool = True


class HistoryType(StrEnum):
    ALL = "all"
    IN = "in"
    OUT = "out"
    MISSED = "missed"


class HistoryPeriod(StrEnum):
    TODAY = "today"
    YESTERDAY = "yesterday"
    THIS_WEEK = "this_week"
    LAST_WEEK = "last_week"
    THIS_MONTH = "this_month"
    LAST_MONTH = "last_month"


class HistoryRow(BaseModel):
    """One call of the PBX's history: a row of the legacy CSV
    (`UID,type,client,account,via,start,wait,duration,record[,rating]`), or a v1 record (JSON or CSV)."""

    model_config = ConfigDict(frozen=True)

    uid: str = Field(min_length=1)
    type: str
    client: str
    account: str
    via: str
    start: datetime
    wait: int = Field(ge=0)
    duration: int = Field(ge=0)
    record: str | None = None
    rating: str | None = None
    line: int = Field(description="line number in the CSV (or position in the v1 JSON), for error reports")


class V1HistoryRow(HistoryRow):
    """A v1 `/history/json` record: a HistoryRow that also says how the call ended (`Success`,
    `missed`, `Busy`, `Cancel`, ...) and, where the PBX gives it, its verdict on a missed call
    (`missed_status`: 1 the client called back, 2 we did, 3 nobody did, 4 we tried and failed)."""

    status: str | None = None
    missed_status: int | None = None


class RejectedHistoryRow(BaseModel):
    line: int
    reason: str
