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


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class PbxAccount(_Answer):
    """A PBX user (`accounts`)."""

    name: str
    real_name: LooseText = Field(default=None, alias="realName")
    ext: LooseText = None
    telnum: LooseText = None
    email: LooseText = None


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
    """One row of the history CSV: `UID,type,client,account,via,start,wait,duration,record[,rating]`."""

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
    line: int = Field(description="line number in the CSV, for error reports")


class RejectedHistoryRow(BaseModel):
    line: int
    reason: str
