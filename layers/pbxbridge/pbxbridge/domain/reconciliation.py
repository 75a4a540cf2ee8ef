"""Reconciliation: converge on the PBX's call history, the source of truth, whatever pushes were lost.

A run walks a time range in windows. Each window's history CSV is streamed in chunks of rows: the
chunk's calls are looked up in one batch read; a call never seen is created complete from its row, a
call the webhook stored is merged (its fields are kept, the CSV's own are added), a call already
reconciled is skipped (only v1's verdict on a missed call, `missed_status`, is brought up to date).
The API has no offset, so a window that returns `limit` rows is split in two and walked again: where
its page of oldest calls ends, so that no call has to be read twice (crmapi/v1 may return a history
record only once). The watermark moves to a window's end only after that window is stored, and only
forwards: a run that dies halfway repeats safely, and an overlapping run cannot move it back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Protocol

from pbxbridge.domain.calls import Attribution, Outcome, by_login, status_outcome
from pbxbridge.pbx.models import HistoryPeriod, HistoryRow, HistoryType, RejectedHistoryRow, V1HistoryRow
from pbxbridge.phones import InvalidPhoneError, normalize_phone

CHUNK = 100  # one BatchGetItem
AHEAD = 1  # chunks read and converted ahead of the one being stored


@dataclass(frozen=True, slots=True)
class HistoryCall:
    """A call as the history CSV tells it, read into the call item's terms."""

    callid: str
    direction: str
    status: str | None
    outcome: Outcome
    client: str
    client_raw: str
    user: str
    pbx_user: str | None
    started_at: datetime
    duration: int
    wait: int
    via: str | None
    link: str | None
    rating: int | None
    crm_user: str | None = None
    missed_status: int | None = None  # v1's verdict on a missed call (`process_missed`), 1..4


@dataclass(frozen=True, slots=True)
class CallState:
    exists: bool
    reconciled: bool
    had_history: bool = False  # the webhook stored its `history` push (and ran its scenario then)
    missed_status: int | None = None  # the PBX's verdict on a missed call as stored


class History(Protocol):
    def history(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        period: HistoryPeriod | None = None,
        call_type: HistoryType = HistoryType.ALL,
        limit: int | None = None,
    ) -> Iterator[HistoryRow | RejectedHistoryRow]: ...


class Ledger(Protocol):
    """Data access for reconciliation: batch reads and writes of calls, and the watermark."""

    def reconciliation_state(self, callids: list[str]) -> dict[str, CallState]: ...
    def create_calls(self, calls: list[HistoryCall], reconciled_at: datetime) -> int:
        """Create calls still missing (a call stored meanwhile is merged instead); returns how many."""
        ...

    def write_old_calls(self, calls: list[HistoryCall], reconciled_at: datetime) -> None:
        """Write missing calls too old to get any more pushes, in batches."""
        ...

    def merge_call(self, call: HistoryCall, reconciled_at: datetime, *, had_history: bool = True) -> bool:
        """Merge into the stored call; True when no call was stored (it was created)."""
        ...

    def watermark(self) -> datetime | None: ...
    def advance_watermark(self, to: datetime) -> bool:
        """Move the watermark to `to` if that is later; False when it already was."""
        ...


NEW = CallState(exists=False, reconciled=False)


@dataclass
class SyncReport:
    rows_seen: int = 0
    created: int = 0  # calls whose every push was lost
    merged: int = 0  # calls the webhook had, completed from the CSV
    already_reconciled: int = 0
    verdicts_updated: int = 0  # reconciled missed calls whose PBX verdict changed since (a re-read)
    rejected: list[str] = field(default_factory=list)
    windows: int = 0
    splits: int = 0
    watermark: datetime | None = None
    done_until: datetime | None = None  # a backfill stopped early goes on from here
    complete: bool = True

    def as_dict(self) -> dict[str, object]:
        return {
            "rows_seen": self.rows_seen,
            "created": self.created,
            "merged": self.merged,
            "already_reconciled": self.already_reconciled,
            "verdicts_updated": self.verdicts_updated,
            "rejected": len(self.rejected),
            "rejected_reasons": self.rejected[:50],
            "windows": self.windows,
            "splits": self.splits,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "resume_from": None if self.complete or not self.done_until else self.done_until.isoformat(),
            "complete": self.complete,
        }


def call_from_row(row: HistoryRow, region: str, attribute: Attribution = by_login) -> HistoryCall:
    """Raises InvalidPhoneError when the client's number cannot be read."""
    phone = normalize_phone(row.client, region)
    kind = row.type.lower()
    status: str | None
    if kind == "missed":
        direction, status, outcome = "in", "missed", Outcome.MISSED
    elif kind == "out" and isinstance(row, V1HistoryRow) and (told := status_outcome(row.status)):
        # v1's JSON says how an outbound call ended (`Busy`, `NotAvailable`, ...), the CSV does not.
        direction, (status, outcome) = "out", told
    elif kind == "out":
        answered = row.duration > 0
        direction, status, outcome = (
            "out",
            "Success" if answered else None,
            (Outcome.ANSWERED if answered else Outcome.NOT_ANSWERED),
        )
    else:
        direction, status, outcome = "in", "Success", Outcome.ANSWERED
    rating = int(row.rating) if row.rating and row.rating.isdecimal() and len(row.rating) < 10 else None
    return HistoryCall(
        callid=row.uid,
        direction=direction,
        status=status,
        outcome=outcome,
        client=phone.e164,
        client_raw=row.client,
        user=row.account,
        pbx_user=attribute(row.account)[0],
        crm_user=attribute(row.account)[1],
        started_at=row.start.astimezone(UTC),
        duration=row.duration,
        wait=row.wait,
        via=normalize_via(row.via, region),
        link=row.record,
        rating=rating,
        missed_status=row.missed_status if isinstance(row, V1HistoryRow) and kind == "missed" else None,
    )


def normalize_via(via: str, region: str) -> str | None:
    if not via:
        return None
    try:
        return normalize_phone(via, region).e164
    except InvalidPhoneError:
        return via


def _chunks(
    rows: Iterable[HistoryRow | RejectedHistoryRow], size: int
) -> Iterator[list[HistoryRow | RejectedHistoryRow]]:
    chunk: list[HistoryRow | RejectedHistoryRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _PageStarts:
    """The start times of one page of the history as it streams by: were they oldest first, and the latest."""

    def __init__(self) -> None:
        self.latest: datetime | None = None
        self.ascending = True

    def note(self, rows: Iterable[HistoryRow | RejectedHistoryRow]) -> Iterator[HistoryRow | RejectedHistoryRow]:
        for row in rows:
            if isinstance(row, HistoryRow):
                if self.latest is not None and row.start < self.latest:
                    self.ascending = False
                self.latest = row.start if self.latest is None else max(self.latest, row.start)
            yield row


@dataclass
class Reconciler:
    history: History
    ledger: Ledger
    region: str
    limit: int = 1000
    # A missing call older than this is created whole (only if still missing), not merged field by field.
    settled_after: timedelta = timedelta(hours=2)
    # One older than this can get no more pushes at all (the PBX pushes as a call ends): a backfill
    # writes those in batches.
    old_after: timedelta = timedelta(days=1)
    min_window: timedelta = timedelta(seconds=1)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(tz=UTC))
    attribute: Attribution = by_login
    # Told of a chunk's calls not yet reconciled whose history push never arrived, before any of them
    # is written: the scenarios' chance at calls whose history push was lost.
    on_reconciling: Callable[[list[HistoryCall]], None] = field(default=lambda calls: None)

    def store_rows(self, rows: Iterable[HistoryRow | RejectedHistoryRow], report: SyncReport) -> int:
        """Store one window's rows; returns how many rows (rejected included) the PBX sent.

        A chunk is read, converted and looked up while the previous one is written: the writes stay
        in one thread, chunk after chunk, in the PBX's order, and every chunk is stored before this
        returns, so the watermark only moves past what was stored. The only chunk a lookup can run
        ahead of is the one being written: a call listed in both is the same call, already
        reconciled by it, as it would be found. Reading runs at most `AHEAD` chunks ahead: memory
        stays flat however long the window."""
        count = 0
        pending: deque[Future[None]] = deque()
        writing: set[str] = set()  # the calls of the chunk that may still be being written
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-lookup") as looking_up,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile-store") as storing,
        ):
            try:
                for chunk in _chunks(rows, CHUNK):
                    count += len(chunk)
                    calls = self._calls(chunk, report)
                    repeated = calls.keys() & writing
                    for callid in repeated:
                        del calls[callid]
                    report.already_reconciled += len(repeated)
                    if calls:
                        state = looking_up.submit(self.ledger.reconciliation_state, list(calls))
                        pending.append(storing.submit(self._store, calls, state, self.clock(), report))
                        writing = set(calls)
                    while len(pending) > AHEAD:
                        pending.popleft().result()
                while pending:
                    pending.popleft().result()
            finally:
                for future in pending:
                    future.cancel()  # a chunk failed (or the PBX stream did): store nothing after it
        return count

    def _calls(self, chunk: list[HistoryRow | RejectedHistoryRow], report: SyncReport) -> dict[str, HistoryCall]:
        calls: dict[str, HistoryCall] = {}
        for row in chunk:
            if isinstance(row, RejectedHistoryRow):
                report.rejected.append(f"line {row.line}: {row.reason}")
                continue
            report.rows_seen += 1
            try:
                calls[row.uid] = call_from_row(row, self.region, self.attribute)
            except InvalidPhoneError:
                report.rejected.append(f"call {row.uid}: client {row.client[:40]!r} is not a phone number")
        return calls

    def _store(
        self, calls: dict[str, HistoryCall], lookup: Future[dict[str, CallState]], now: datetime, report: SyncReport
    ) -> None:
        state = lookup.result()
        settled_before, old_before = now - self.settled_after, now - self.old_after
        to_reconcile: list[tuple[HistoryCall, CallState | None]] = []
        for callid, call in calls.items():
            known = state.get(callid)
            if not (known and known.reconciled):
                to_reconcile.append((call, known))
                continue
            report.already_reconciled += 1
            if call.missed_status is not None and call.missed_status != known.missed_status:
                # The PBX's verdict moved since the call was reconciled (a call-back made after the
                # first read): kept, and the call-backs follow it.
                self.ledger.merge_call(call, now)
                report.verdicts_updated += 1
        # Before the calls are marked reconciled: a run that dies after this repeats it (the scenarios'
        # writes are conditional, so repeating is harmless), never skips it. A call whose history push
        # arrived had its scenario then; a contact deleted since stays deleted.
        without_history = [call for call, known in to_reconcile if not (known and known.had_history)]
        if without_history:
            self.on_reconciling(without_history)
        to_create: list[HistoryCall] = []
        to_write: list[HistoryCall] = []
        for call, known in to_reconcile:
            if known is None and call.started_at < old_before:
                to_write.append(call)
            elif known is None and call.started_at < settled_before:
                to_create.append(call)
            elif self.ledger.merge_call(call, now, had_history=bool(known and known.had_history)):
                report.created += 1
            else:
                report.merged += 1
        if to_create:
            created = self.ledger.create_calls(to_create, now)
            report.created += created
            report.merged += len(to_create) - created
        if to_write:
            self.ledger.write_old_calls(to_write, now)
            report.created += len(to_write)

    def walk(
        self,
        start: datetime,
        end: datetime,
        report: SyncReport,
        *,
        advance: bool,
        window: timedelta,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> SyncReport:
        """Reconcile [start, end) in windows; with `advance`, move the watermark after each one."""
        # The API speaks whole seconds: a window's end with a fraction would be cut short on the wire.
        cursor, end = start.replace(microsecond=0), end.replace(microsecond=0)
        while cursor < end:
            if not keep_going():
                report.complete = False
                break
            window_end = min(cursor + window, end)
            self._window(cursor, window_end, report)
            if advance:
                self.ledger.advance_watermark(window_end)
                report.watermark = window_end
            report.done_until = window_end
            cursor = window_end
        return report

    def _window(self, start: datetime, end: datetime, report: SyncReport) -> None:
        report.windows += 1
        page = _PageStarts()
        count = self.store_rows(page.note(self.history.history(start=start, end=end, limit=self.limit)), report)
        if count >= self.limit and end - start > self.min_window:
            # The page was full and there is no offset. A page of the window's oldest calls is split
            # where it ends: what the PBX did not send started in the page's last second or later, and
            # that second is a window of its own, so a PBX that returns a record only once (v1, by one
            # report) and counts it against `limit` all the same cannot hide the calls after it. Any
            # other page is split in the middle.
            report.splits += 1
            latest = page.latest.replace(microsecond=0) if page.ascending and page.latest else None
            if latest is not None and start < latest and latest + self.min_window < end:
                cuts = [start, latest, latest + self.min_window, end]
            else:
                middle = start + (end - start) / 2
                cuts = [start, middle.replace(microsecond=0) if middle.replace(microsecond=0) > start else middle, end]
            for left, right in pairwise(cuts):
                self._window(left, right, report)
        elif count >= self.limit:
            report.rejected.append(
                f"more than {self.limit} calls started within {start.isoformat()}: some were not read"
            )


def period_range(period: HistoryPeriod, now: datetime, utc_offset: timedelta) -> tuple[datetime, datetime]:
    """The PBX's named periods as UTC ranges, in the tenant's local time (its UTC offset)."""
    local = now.astimezone(UTC) + utc_offset
    today = local.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - timedelta(days=today.weekday())
    first = today.replace(day=1)
    ranges = {
        HistoryPeriod.TODAY: (today, today + timedelta(days=1)),
        HistoryPeriod.YESTERDAY: (today - timedelta(days=1), today),
        HistoryPeriod.THIS_WEEK: (monday, monday + timedelta(days=7)),
        HistoryPeriod.LAST_WEEK: (monday - timedelta(days=7), monday),
        HistoryPeriod.THIS_MONTH: (first, (first + timedelta(days=32)).replace(day=1)),
        HistoryPeriod.LAST_MONTH: ((first - timedelta(days=1)).replace(day=1), first),
    }
    start, end = ranges[period]
    return (start - utc_offset).replace(tzinfo=UTC), min((end - utc_offset).replace(tzinfo=UTC), now)
