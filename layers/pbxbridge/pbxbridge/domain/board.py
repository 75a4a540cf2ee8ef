"""The team's live board: who is on a call now, who is in DND, whose call-backs wait and how long
(no boto3, no HTTP; the board's own data are kept by storage/board.py).

- A call is on the board from its first ring (or dial) to its end. What a change of a call means for
  the board is decided from the stream record's old and new images (`board_change`), like the card.
- Who watches whom: a supervisor sees `visible_logins` (themself and their departments' members), an
  admin everyone, a manager nobody but themself, and managers are never told about anyone: the
  board's messages go to the active supervisors and admins who see at least one person concerned.
- A call-back's age counts business time by the tenant calendar (wall time without one), from its
  first missed call, as the overdue checker counts its SLA: `ok` below 2/3 of the SLA, `due` from
  2/3, `overdue` at or past it (or once escalated).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pbxbridge.domain.card import presence, state_of
from pbxbridge.domain.directory import Directory, PbxUser, utc_text, visible_logins
from pbxbridge.phones import national

if TYPE_CHECKING:
    from pbxbridge.domain.callbacks import Callback
    from pbxbridge.domain.working_time import WorkingCalendar

# A call whose end never reached us (a lost push, reconciliation without live events) leaves the
# board after this long, whatever happened; a live call lasting longer is very rare.
LIVE_CALL_SECONDS = 12 * 3600
# An ended call is kept this long as a tombstone, so that a replayed older record of it cannot put it
# back (the card function's stream mapping drops records older than a minute and retries once).
ENDED_CALL_SECONDS = 15 * 60
DUE_SHARE = 2 / 3

Sla = Literal["ok", "due", "overdue"]


def _started(call: Mapping[str, Any] | None) -> bool:
    return call is not None and any(call.get(k) for k in ("rang_at", "dialled_at"))


def call_people(call: Mapping[str, Any], directory: Directory) -> list[str]:
    """Who is on this call now: whoever took it once answered; before that, every user it rings (or
    the one who dialled)."""
    taker = directory.resolve(call.get("accepted_by"))
    if call.get("accepted_at") and taker:
        return [taker]
    people = {directory.resolve(str(leg)) for leg in call.get("legs_rang") or ()}
    people.add(directory.resolve(call.get("pbx_user")))
    return sorted(p for p in people if p)


def board_call(call: Mapping[str, Any], directory: Directory, region: str, contact_name: str | None) -> dict[str, Any]:
    """The call as the board shows it (and `board.call` carries it)."""
    client = call.get("client")
    return {
        "callid": str(call["callid"]),
        "direction": call.get("direction"),
        "state": state_of(call),
        "people": call_people(call, directory),
        "client": client,
        "client_national": national(client, region) if client else None,
        "contact_name": contact_name,
        "since": call.get("rang_at") or call.get("dialled_at"),
        "answered_at": call.get("accepted_at"),
    }


@dataclass(frozen=True, slots=True)
class BoardCallChange:
    """A call's change that the board shows: it came on (or changed: answered, another leg), or ended."""

    callid: str
    ended: bool


def board_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> BoardCallChange | None:
    """What a change of a call item means for the board; None when nothing it shows changed. A call that
    was never live on the board (a history row of a finished call) is never put on it."""
    if new is None or not _started(new):
        return None
    callid = str(new["callid"])
    if state_of(new) == "ended":
        was_live = _started(old) and state_of(old or {}) != "ended"
        return BoardCallChange(callid, ended=True) if was_live else None
    if not _started(old):
        return BoardCallChange(callid, ended=False)
    assert old is not None
    shown = ("accepted_at", "accepted_by", "legs_rang", "pbx_user", "direction", "client")
    if state_of(old) != state_of(new) or any(old.get(k) != new.get(k) for k in shown):
        return BoardCallChange(callid, ended=False)
    return None


class BoardStore(Protocol):
    """The board's own data (pbxbridge.storage.board's store is one)."""

    def keep_call(self, callid: str, position: str, call: Mapping[str, Any] | None) -> bool:
        """Make the board's item of this call the one at stream `position` (None: ended), unless a
        later (or the same) position was kept already; True when it was."""
        ...


class DndRecorder(Protocol):
    """Where the command service records a user's DND state after the PBX said it."""

    def record_dnd(self, login: str, on: bool, at: datetime) -> None: ...


def dnd_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`board.dnd` for a change of a DND item when the state changed (not a re-read of the same)."""
    if new is None or (old is not None and bool(old.get("on")) == bool(new.get("on"))):
        return None
    return {"type": "board.dnd", "login": new["id"], "dnd": {"on": bool(new.get("on")), "as_of": new.get("as_of")}}


def watchers(people: Iterable[str], directory: Directory) -> set[str]:
    """The active supervisors and admins who see at least one of `people` on their board."""
    concerned = set(people)
    if not concerned:
        return set()
    found = set()
    for user in directory.users:
        if not user.active or user.role == "manager":
            continue
        if user.role == "admin" or concerned & visible_logins(user, directory):
            found.add(user.login)
    return found


def callback_board_watchers(owners: Iterable[str], directory: Directory) -> set[str]:
    """Whose board a change of call-backs of these owners (logins, `g_<id>`, `unassigned`) changes:
    the supervisors who see the owner or head the department, and every admin."""
    logins = {owner for owner in owners if not owner.startswith("g_") and owner != "unassigned"}
    departments = {owner[2:] for owner in owners if owner.startswith("g_")}
    found = watchers(logins, directory)
    for user in directory.users:
        if not user.active or user.role == "manager":
            continue
        if user.role == "admin" or departments & set(user.departments):
            found.add(user.login)
    return found


def sla_of(age_seconds: float, sla: timedelta, escalated: bool = False) -> Sla:
    limit = sla.total_seconds()
    if escalated or age_seconds >= limit:
        return "overdue"
    return "due" if age_seconds >= limit * DUE_SHARE else "ok"


def callbacks_summary(
    callbacks: Iterable[Callback], calendar: WorkingCalendar, sla: timedelta, now: datetime
) -> dict[str, Any]:
    """One owner's open call-backs as the board shows them: how many, how many overdue, the oldest's
    age in business seconds and its colour (null when none is open)."""
    open_ = [c for c in callbacks if c.status.value == "open"]
    if not open_:
        return {"open": 0, "overdue": 0, "oldest_missed_at": None, "oldest_age_seconds": None, "sla": None}
    colours = []
    for callback in open_:
        age = calendar.business_seconds_between(callback.first_missed_at, now)
        colours.append((callback.first_missed_at, age, sla_of(age, sla, callback.overdue_since is not None)))
    oldest = min(colours, key=lambda c: c[0])
    return {
        "open": len(open_),
        "overdue": sum(1 for c in colours if c[2] == "overdue"),
        "oldest_missed_at": utc_text(oldest[0]),
        "oldest_age_seconds": int(oldest[1]),
        "sla": oldest[2],
    }


def team_departments(viewer: PbxUser, directory: Directory) -> list[str]:
    """The departments whose call-backs the viewer's board shows: a supervisor's, or every one for an admin."""
    if viewer.role == "admin":
        known = {d.id for d in directory.departments} | {g for u in directory.users for g in u.groups}
        return sorted(known)
    return sorted(set(viewer.departments))


def team_people(viewer: PbxUser, directory: Directory) -> list[PbxUser]:
    """The active people on the viewer's board (themself included), by name."""
    seen = visible_logins(viewer, directory)
    people = [user for user in directory.users if user.active and user.login in seen]
    return sorted(people, key=lambda u: ((u.real_name or u.login).casefold(), u.login))


@dataclass(frozen=True)
class BoardData:
    """What the board is built from, read side by side (storage/board.py, the call-backs, the calendar)."""

    calls: list[dict[str, Any]]  # the live calls' board views
    dnd: Mapping[str, Mapping[str, Any]]  # login -> {"on", "as_of"}
    callbacks: Mapping[str, list[Callback]]  # owner (login or g_<id>) -> open call-backs
    department_names: Mapping[str, str | None]


def board_snapshot(
    viewer: PbxUser,
    directory: Directory,
    data: BoardData,
    calendar: WorkingCalendar,
    sla: timedelta,
    now: datetime,
) -> dict[str, Any]:
    """`GET /api/team/board`'s answer for the viewer."""
    calls_of: dict[str, list[dict[str, Any]]] = {}
    for call in sorted(data.calls, key=lambda c: (str(c.get("since") or ""), str(c["callid"]))):
        shown = {k: v for k, v in call.items() if k != "people"}
        for login in call.get("people") or ():
            calls_of.setdefault(login, []).append(shown)
    people = []
    for user in team_people(viewer, directory):
        dnd = data.dnd.get(user.login)
        people.append(
            {
                "login": user.login,
                "name": user.real_name or user.login,
                "departments": list(user.groups),
                "presence": presence(directory, user.login, now),
                "dnd": {"on": bool(dnd.get("on")), "as_of": dnd.get("as_of")} if dnd else None,
                "calls": calls_of.get(user.login, []),
                "callbacks": callbacks_summary(data.callbacks.get(user.login, ()), calendar, sla, now),
            }
        )
    departments = [
        {
            "id": department,
            "name": data.department_names.get(department) or department,
            "callbacks": callbacks_summary(data.callbacks.get(f"g_{department}", ()), calendar, sla, now),
        }
        for department in team_departments(viewer, directory)
    ]
    return {
        "as_of": utc_text(now),
        "sla_seconds": int(sla.total_seconds()),
        "people": people,
        "departments": departments,
    }


__all__ = [
    "ENDED_CALL_SECONDS",
    "LIVE_CALL_SECONDS",
    "BoardCallChange",
    "BoardData",
    "BoardStore",
    "DndRecorder",
    "board_call",
    "board_change",
    "board_snapshot",
    "call_people",
    "callback_board_watchers",
    "callbacks_summary",
    "dnd_change",
    "sla_of",
    "team_departments",
    "team_people",
    "watchers",
]
