"""The live call card: what a change of a call means for the people watching it (no boto3, no HTTP).

A card goes to every open widget of the users the call rang and of the contact's responsible
manager (and of the user who took or placed it); it is then updated when the call is answered, ends
or its recording is archived. Like the call events, each is decided by comparing the stream
record's old and new image, so it is sent once per transition whatever order the pushes came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pbxbridge.domain.contacts import Contact
from pbxbridge.domain.directory import Directory, utc_text
from pbxbridge.phones import national

LAST_CALLS = 5


@dataclass(frozen=True, slots=True)
class CardChange:
    """What one change of a call item means for its card."""

    callid: str
    newly_rung: frozenset[str]  # legs (as the PBX named them) that started ringing with this change
    first_ring: bool  # the call started ringing (or dialling) with this change
    answered: bool
    ended: bool
    recorded: bool

    @property
    def updates(self) -> bool:
        return self.answered or self.ended or self.recorded


def _legs(item: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(leg) for leg in item.get("legs_rang") or ())


def card_change(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> CardChange | None:
    old = old or {}
    started = any(new.get(k) for k in ("rang_at", "dialled_at")) and not any(
        old.get(k) for k in ("rang_at", "dialled_at")
    )
    change = CardChange(
        callid=str(new["callid"]),
        newly_rung=_legs(new) - _legs(old),
        first_ring=bool(started),
        answered=bool(new.get("accepted_at")) and not old.get("accepted_at"),
        # Once when the last leg hangs up, again when the history tells the outcome.
        ended=(bool(new.get("completed_at")) and not old.get("completed_at"))
        or (bool(new.get("outcome")) and not old.get("outcome")),
        recorded=bool(new.get("recording_key")) and not old.get("recording_key"),
    )
    if not (change.newly_rung or change.first_ring or change.updates):
        return None
    return change


def responsible_login(contact: Contact | None, directory: Directory) -> str | None:
    """The PBX login of the contact's responsible (a mapped CRM user, a login, extension or number)."""
    if contact is None or not contact.responsible:
        return None
    return directory.responsible_login(contact.responsible)


def people_of(call: Mapping[str, Any], directory: Directory, responsible: str | None) -> set[str]:
    """Everyone who sees this call's card: the users it rang, who took or placed it, the responsible."""
    people = {directory.resolve(leg) for leg in _legs(call)}
    people |= {directory.resolve(call.get(k)) for k in ("pbx_user", "accepted_by")}
    people.add(responsible)
    return {p for p in people if p}


def may_see(login: str, call: Mapping[str, Any], directory: Directory, responsible: str | None) -> bool:
    """The widget's rule for a user's own data: calls that rang them, theirs, or their contacts'."""
    return login in people_of(call, directory, responsible)


def crm_record_url(template: str | None, contact: Contact | None) -> str | None:
    if not template or contact is None or not contact.crm_id:
        return None
    return template.replace("{crm_id}", quote(contact.crm_id, safe=""))


def state_of(call: Mapping[str, Any]) -> str:
    if call.get("outcome") or call.get("completed_at"):
        return "ended"
    if call.get("accepted_at"):
        return "answered"
    return "ringing"


def _display(directory: Directory, login: str | None) -> dict[str, str] | None:
    if not login:
        return None
    user = directory.user(login)
    return {"login": login, "name": (user.real_name if user and user.real_name else login)}


def presence(directory: Directory, login: str | None, now: datetime) -> dict[str, Any] | None:
    """A user's presence as of the last directory sync (`state` as the PBX words it: `online`,
    `offline`, `away`, ...), with when that was and how long ago; None where the PBX gives none
    (the legacy API) or the directory does not know the user."""
    user = directory.user(login)
    if user is None or not user.presence:
        return None
    at = user.presence_at
    return {
        "state": user.presence.lower(),
        "as_of": utc_text(at) if at else None,
        "age_seconds": max(0, int((now - at).total_seconds())) if at else None,
    }


def _responsible(directory: Directory, login: str | None, now: datetime) -> dict[str, Any] | None:
    shown: dict[str, Any] | None = _display(directory, login)
    if shown is not None:
        shown["presence"] = presence(directory, login, now)
    return shown


def past_call(call: Mapping[str, Any], directory: Directory) -> dict[str, Any]:
    who = directory.resolve(call.get("accepted_by")) or directory.resolve(call.get("pbx_user"))
    return {
        "callid": call["callid"],
        "started_at": call.get("started_at"),
        "direction": call.get("direction"),
        "who": _display(directory, who),
        "outcome": call.get("outcome") or state_of(call),
        # The history's duration of an unanswered call is how long the caller waited: not a talk.
        "duration": call.get("duration") if call.get("outcome") == "answered" else None,
        "recorded": bool(call.get("recording_key")),
    }


def card_update(call: Mapping[str, Any], directory: Directory) -> dict[str, Any]:
    """The parts of a card that change after it rang."""
    answered_by = directory.resolve(call.get("accepted_by"))
    return {
        "callid": call["callid"],
        "state": state_of(call),
        "answered_by": _display(directory, answered_by),
        "outcome": call.get("outcome"),
        "duration": call.get("duration") if call.get("outcome") == "answered" else None,
        "recorded": bool(call.get("recording_key")),
    }


def build_card(
    call: Mapping[str, Any],
    contact: Contact | None,
    last_calls: Iterable[Mapping[str, Any]],
    directory: Directory,
    region: str,
    crm_url_template: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole card, as it pops up while the phone rings; `now` dates the responsible's presence."""
    responsible = responsible_login(contact, directory)
    history = [c for c in last_calls if c.get("callid") != call["callid"]][:LAST_CALLS]
    return {
        **card_update(call, directory),
        "direction": call.get("direction"),
        "phone": call.get("client"),
        "phone_national": national(call.get("client"), region),
        "rang_at": call.get("rang_at") or call.get("dialled_at"),
        "contact": (
            {
                "name": contact.contact_name,
                "crm_url": crm_record_url(crm_url_template, contact),
                "lead": contact.lead,
            }
            if contact
            else None
        ),
        "responsible": _responsible(directory, responsible, now or datetime.now(tz=UTC)),
        "last_calls": [past_call(c, directory) for c in history],
    }


__all__ = [
    "LAST_CALLS",
    "CardChange",
    "build_card",
    "card_change",
    "card_update",
    "may_see",
    "people_of",
    "presence",
    "responsible_login",
]
