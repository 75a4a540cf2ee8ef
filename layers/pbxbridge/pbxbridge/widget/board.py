"""`GET /api/team/board`: the live board's snapshot for a supervisor or an admin, read side by side.

The reads: the calls in progress (one Query of the board's `kind=call`), the DND states (one Query of
`kind=dnd`), the tenant calendar (one GetItem), the departments' names (one Query), and each visible
person's and department's open call-backs (one Query of the call-backs' `by_owner` index each): all
at once in a small pool, so the answer takes about as long as the slowest read, and no more requests
than that whatever the number of calls.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from pbxbridge.domain.board import BoardData, board_snapshot, team_departments, team_people
from pbxbridge.domain.callbacks import Callback, CallbackPage, CallbackStatus
from pbxbridge.domain.directory import Department, Directory, PbxUser
from pbxbridge.domain.working_time import WorkingCalendar

# Open call-backs read per owner (pages of the by_owner index): a person with more is overdue anyway.
MAX_OPEN_PER_OWNER = 1000
PAGE = 250


class BoardReader(Protocol):
    def live_calls(self) -> list[dict[str, Any]]: ...
    def dnd_states(self) -> dict[str, dict[str, Any]]: ...


class OpenCallbacks(Protocol):
    def list_callbacks(
        self, owner: str, status: CallbackStatus, limit: int = 50, cursor: str | None = None
    ) -> CallbackPage: ...


@dataclass(frozen=True)
class TeamBoard:
    """What the board's snapshot reads, and how the call-backs' ages are judged."""

    board: BoardReader
    callbacks: OpenCallbacks | None
    calendar: Callable[[], WorkingCalendar]  # the tenant calendar in force (one read)
    departments: Callable[[], tuple[Department, ...]]
    sla: timedelta
    clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC)

    def snapshot(self, viewer: PbxUser, directory: Directory) -> dict[str, Any]:
        owners = [user.login for user in team_people(viewer, directory)]
        owners += [f"g_{department}" for department in team_departments(viewer, directory)]
        pool = _reading_pool()
        calls = pool.submit(self.board.live_calls)
        dnd = pool.submit(self.board.dnd_states)
        calendar = pool.submit(self.calendar)
        departments = pool.submit(self.departments)
        open_ = list(pool.map(self._open_of, owners))
        data = BoardData(
            calls=calls.result(),
            dnd=dnd.result(),
            callbacks=dict(zip(owners, open_, strict=True)),
            department_names={d.id: d.real_name for d in departments.result()},
        )
        return board_snapshot(viewer, directory, data, calendar.result(), self.sla, self.clock())

    def _open_of(self, owner: str) -> list[Callback]:
        if self.callbacks is None:
            return []
        found: list[Callback] = []
        cursor: str | None = None
        while len(found) < MAX_OPEN_PER_OWNER:
            page = self.callbacks.list_callbacks(owner, CallbackStatus.OPEN, PAGE, cursor)
            found += page.callbacks
            cursor = page.cursor
            if cursor is None:
                break
        return found


@lru_cache(maxsize=1)
def _reading_pool() -> ThreadPoolExecutor:
    """The container's one pool for the board's reads (built on the first board asked, kept): a few
    requests at once, never one thread per person."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="board-read")


def team_board(client: Any, settings: Any, sla_minutes: int) -> TeamBoard | None:
    """The board's reads on DynamoDB (None where the stack keeps no board)."""
    from pbxbridge.domain.reports import DEFAULT_ZONE
    from pbxbridge.domain.working_time import tenant_calendar
    from pbxbridge.storage.board import DynamoBoardStore
    from pbxbridge.storage.calendar import DynamoCalendarStore
    from pbxbridge.storage.callbacks import DynamoCallbackStore
    from pbxbridge.storage.directory import DynamoDirectoryStore

    if not settings.board_table:
        return None
    default = WorkingCalendar.read(settings.working_hours) if settings.working_hours else None
    directory = DynamoDirectoryStore(client, settings.directory_table) if settings.directory_table else None
    calendars = DynamoCalendarStore(client, settings.directory_table) if settings.directory_table else None

    def calendar() -> WorkingCalendar:
        # As the report command judges it: the one setWorkingHours stored, else the parameter's, else wall time.
        stored = calendars.working_calendar() if calendars is not None else None
        return tenant_calendar(stored, default, DEFAULT_ZONE)

    return TeamBoard(
        board=DynamoBoardStore(client, settings.board_table),
        callbacks=DynamoCallbackStore(client, settings.callbacks_table) if settings.callbacks_table else None,
        calendar=calendar,
        departments=directory.departments if directory is not None else lambda: (),
        sla=timedelta(minutes=sla_minutes),
    )


__all__ = ["TeamBoard", "team_board"]
