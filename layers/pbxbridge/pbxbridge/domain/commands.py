"""What each command does: the PBX's eight through the PBX client, and the CRM's own data.

The PBX client and the stores are passed in (Protocols below), so this module never touches HTTP or
boto3 and tests can swap either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

from pbxbridge.domain.callbacks import UNASSIGNED, CallbackStatus, CallbackStore, group_owner, list_callbacks
from pbxbridge.domain.contacts import ContactStore, read_contacts, save_contacts
from pbxbridge.domain.directory import (
    CrmUser,
    DirectorySource,
    DirectoryStore,
    RoleChanges,
    propose_mappings,
    sync_directory,
    user_listing,
)
from pbxbridge.domain.reconciliation import History
from pbxbridge.pbx.models import (
    CallerId,
    MakeCallResult,
    RejectedHistoryRow,
)
from pbxbridge.phones import Phone
from pbxbridge.protocol.commands import (
    AccountsCommand,
    DeleteContactCommand,
    GetCallCommand,
    GetDndCommand,
    GetRecordingUrlCommand,
    GetWorkingHoursCommand,
    GroupsCommand,
    HistoryCommand,
    IssueWidgetTokenCommand,
    ListCallbacksCommand,
    ListCallerIdsCommand,
    ListCallsCommand,
    ListUsersCommand,
    MakeCallCommand,
    MapUserCommand,
    ProposeUserMappingsCommand,
    RebuildReportsCommand,
    ReportCommand,
    SetDndCommand,
    SetWorkingHoursCommand,
    SubscribeOnCallsCommand,
    SubscriptionStatusCommand,
    SyncDirectoryCommand,
    UpsertContactsCommand,
)

if TYPE_CHECKING:  # the calendar's models are built where a calendar command needs them (cold starts)
    from datetime import date

    from pbxbridge.domain.board import DndRecorder
    from pbxbridge.domain.reports import Aggregate, Contribution
    from pbxbridge.domain.working_time import CalendarStore, WorkingCalendar


class ReportReader(Protocol):
    def aggregates(self, days: list[date]) -> dict[tuple[date, str], Aggregate]: ...
    def recount(self, source: str, contribution: Contribution | None) -> bool: ...


SCAN_PAGE = 500  # items a rebuildReports Scan request reads
# One page of a whole-table scan: (start, end, limit, cursor) -> (items, next cursor).
ScanPage = Callable[[str, str, int, "str | None"], tuple[list[dict[str, Any]], "str | None"]]


class Pbx(History, DirectorySource, Protocol):
    """What the commands need of the PBX (pbxbridge.pbx.PbxClient is one)."""

    def make_call(self, phone: Phone | str, user: str, clid: str | None = None) -> MakeCallResult: ...
    def subscribe_on_calls(self, user: str, on: bool, group_id: str | None = None) -> None: ...
    def subscription_status(self, user: str, group_id: str) -> bool: ...
    def set_dnd(self, user: str, state: bool) -> None: ...
    def get_dnd(self, user: str) -> bool: ...
    def list_caller_ids(self) -> list[CallerId]: ...


class RecordingLinks(Protocol):
    """The recordings archive, as getRecordingUrl uses it (the recorder's archive is one)."""

    def url_for(self, key: str, seconds: int) -> str: ...


class CallReader(Protocol):
    def get_call(self, callid: str) -> dict[str, Any] | None: ...
    def timeline(self, callid: str) -> list[dict[str, Any]]: ...
    def calls_by_client(self, phone_e164: str, limit: int = 50, cursor: str | None = None) -> Any: ...
    def calls_by_user(self, login: str, limit: int = 50, cursor: str | None = None) -> Any: ...


class CommandError(Exception):
    """A command that cannot be done as asked, with a stable `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CommandService:
    def __init__(
        self,
        pbx: Callable[[], Pbx],
        calls: CallReader,
        contacts: ContactStore,
        region: str,
        directory: DirectoryStore | None = None,
        recordings: RecordingLinks | None = None,
        # (login, ttl) -> (token, expires_at): signs a widget token; None where no key is configured.
        issue_widget_token: Callable[[str, int], tuple[str, int]] | None = None,
        callbacks: CallbackStore | None = None,
        calendars: CalendarStore | None = None,
        # The `WorkingHours` parameter's compact calendar: in force while no command has set one.
        default_calendar: str | None = None,
        reports: ReportReader | None = None,
        # rebuildReports: the calls and the call-backs of a period, scanned from their tables.
        scan_calls: ScanPage | None = None,
        scan_callbacks: ScanPage | None = None,
        # The team's board: the DND state the PBX confirmed (set_dnd) or told (get_dnd), with when.
        dnd: DndRecorder | None = None,
    ) -> None:
        self._pbx = pbx  # made on first use: CRM-data commands need no PBX key
        self._calls = calls
        self._contacts = contacts
        self._region = region
        self._directory = directory
        self._recordings = recordings
        self._issue_token = issue_widget_token
        self._callbacks = callbacks
        self._calendars = calendars
        self._default_calendar = default_calendar
        self._reports = reports
        self._scan_calls = scan_calls
        self._scan_callbacks = scan_callbacks
        self._dnd = dnd

    def run(self, command: Any) -> Any:
        handlers: dict[type, Callable[[Any], Any]] = {
            AccountsCommand: self._accounts,
            GroupsCommand: self._groups,
            MakeCallCommand: self.make_call,
            HistoryCommand: self._history,
            SubscribeOnCallsCommand: self._subscribe_on_calls,
            SubscriptionStatusCommand: self._subscription_status,
            SetDndCommand: self._set_dnd,
            GetDndCommand: self._get_dnd,
            ListCallerIdsCommand: self._list_caller_ids,
            UpsertContactsCommand: self._upsert_contacts,
            DeleteContactCommand: self._delete_contact,
            GetCallCommand: self._get_call,
            ListCallsCommand: self._list_calls,
            SyncDirectoryCommand: self._sync_directory,
            ListUsersCommand: self._list_users,
            MapUserCommand: self._map_user,
            ProposeUserMappingsCommand: self._propose_user_mappings,
            GetRecordingUrlCommand: self._recording_url,
            IssueWidgetTokenCommand: self._issue_widget_token,
            ListCallbacksCommand: self._list_callbacks,
            SetWorkingHoursCommand: self._set_working_hours,
            GetWorkingHoursCommand: self._get_working_hours,
            ReportCommand: self._report,
            RebuildReportsCommand: self._rebuild_reports,
        }
        return handlers[type(command)](command)

    def make_call(self, command: MakeCallCommand) -> dict[str, Any]:
        result = self._pbx().make_call(command.phone, command.user, command.clid)
        # v1 says which caller id the client will see (it may differ from the one asked for).
        shown = {"clid": result.clid} if result.clid else {}
        return {"call_id": result.call_id, "id_known": result.id_known, **shown}

    def _accounts(self, command: AccountsCommand) -> list[dict[str, Any]]:
        return [account.model_dump(exclude_none=True) for account in self._pbx().accounts()]

    def _groups(self, command: GroupsCommand) -> list[dict[str, Any]]:
        return [group.model_dump(exclude_none=True) for group in self._pbx().groups(command.user)]

    def _history(self, command: HistoryCommand) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for row in self._pbx().history(
            start=command.start, end=command.end, period=command.period, call_type=command.type, limit=command.limit
        ):
            if isinstance(row, RejectedHistoryRow):
                rejected.append(row.model_dump())
            else:
                rows.append({**row.model_dump(exclude={"line"}), "start": row.start.isoformat()})
        # The PBX has no offset: a full page means there may be more; ask again with a later start.
        return {"rows": rows, "rejected": rejected, "truncated": len(rows) + len(rejected) >= command.limit}

    def _subscribe_on_calls(self, command: SubscribeOnCallsCommand) -> dict[str, Any]:
        self._pbx().subscribe_on_calls(command.user, command.status, command.group_id)
        return {"status": "on" if command.status else "off"}

    def _subscription_status(self, command: SubscriptionStatusCommand) -> dict[str, Any]:
        return {"status": "on" if self._pbx().subscription_status(command.user, command.group_id) else "off"}

    def _set_dnd(self, command: SetDndCommand) -> dict[str, Any]:
        self._pbx().set_dnd(command.user, command.state)
        self._record_dnd(command.user, command.state)
        return {"state": command.state}

    def _get_dnd(self, command: GetDndCommand) -> dict[str, Any]:
        state = self._pbx().get_dnd(command.user)
        self._record_dnd(command.user, state)
        return {"state": state}

    def _record_dnd(self, user: str, state: bool) -> None:
        """Only after the PBX answered: the board shows what the PBX said, under the canonical login."""
        if self._dnd is not None:
            from datetime import UTC, datetime

            self._dnd.record_dnd(self._login(user), state, datetime.now(tz=UTC))

    def _list_caller_ids(self, command: ListCallerIdsCommand) -> dict[str, Any]:
        return {"caller_ids": [caller_id.model_dump() for caller_id in self._pbx().list_caller_ids()]}

    def _upsert_contacts(self, command: UpsertContactsCommand) -> dict[str, Any]:
        records = ((index, contact.model_dump()) for index, contact in enumerate(command.contacts))
        report = save_contacts(self._contacts, read_contacts(records, self._region, unit="index"))
        return {
            "upserted": report.imported,
            "rejected": [{"index": row.position, "reason": row.reason} for row in report.rejected],
        }

    def _delete_contact(self, command: DeleteContactCommand) -> dict[str, Any]:
        return {"phone": command.phone.e164, "deleted": self._contacts.delete_contact(command.phone.e164)}

    def _get_call(self, command: GetCallCommand) -> dict[str, Any]:
        call = self._calls.get_call(command.callid)
        if call is None:
            raise CommandError("not_found", f"no call {command.callid}")
        return {"call": call, "timeline": self._calls.timeline(command.callid)}

    def _list_calls(self, command: ListCallsCommand) -> dict[str, Any]:
        if command.phone is not None:
            page = self._calls.calls_by_client(command.phone.e164, command.limit, command.cursor)
        else:
            assert command.user is not None  # the model requires one of them
            page = self._calls.calls_by_user(self._login(command.user), command.limit, command.cursor)
        return {"calls": page.calls, "cursor": page.cursor}

    def _login(self, user: str) -> str:
        """Calls are stored under the canonical login: `708`, `+7 926 ...` or `andy@tenant` resolve
        through the directory (one read) to it; without a directory, the user as given."""
        if self._directory is None:
            return user
        return self._directory.snapshot(self._region, departments=False).resolve(user) or user

    def _owner(self, owner: str) -> str:
        """Call-backs are owned by a canonical login, `g_<id>` or `unassigned`: a user in any form
        `listCalls` takes, a group as `g_<id>` or `g_<id>@tenant`."""
        group = group_owner(owner)
        if group is not None or owner == UNASSIGNED:
            return group or owner
        return self._login(owner)

    def _directory_store(self) -> DirectoryStore:
        if self._directory is None:
            raise CommandError("not_configured", "the directory table is not configured (DIRECTORY_TABLE)")
        return self._directory

    def _sync_directory(self, command: SyncDirectoryCommand) -> dict[str, Any]:
        report = sync_directory(self._pbx(), self._directory_store(), self._region)
        return {"users": report.users, "departments": report.departments, "deactivated": report.deactivated}

    def _list_users(self, command: ListUsersCommand) -> dict[str, Any]:
        snapshot = self._directory_store().snapshot(self._region)
        return {
            "users": [user_listing(user) for user in snapshot.users],
            "departments": [asdict(department) for department in snapshot.departments],
        }

    def _map_user(self, command: MapUserCommand) -> dict[str, Any]:
        store = self._directory_store()
        given = command.model_fields_set
        changes = RoleChanges(
            role=command.role,
            departments=tuple(dict.fromkeys(command.departments)) if command.departments is not None else None,
            set_role="role" in given,
            set_departments="departments" in given,
        )
        found = store.map_user(command.login, command.crm_user) if "crm_user" in given else True
        if found and changes:
            found = store.set_role(command.login, changes)
        if not found:
            raise CommandError("not_found", f"no PBX user {command.login} (run syncDirectory first?)")
        answer: dict[str, Any] = {"login": command.login}
        if "crm_user" in given:
            answer["crm_user"] = command.crm_user
        if changes.set_role:
            answer["role"] = changes.role
        if changes.set_departments:
            answer["departments"] = list(changes.departments) if changes.departments is not None else None
        return answer

    def _propose_user_mappings(self, command: ProposeUserMappingsCommand) -> dict[str, Any]:
        store = self._directory_store()
        crm_users = [CrmUser(crm_user=u.crm_user, email=u.email, name=u.name) for u in command.crm_users]
        proposals = propose_mappings(store.snapshot(self._region), crm_users)
        applied = sum(1 for p in proposals if store.map_user(p.login, p.crm_user)) if command.apply else 0
        return {"proposals": [asdict(p) for p in proposals], "applied": applied}

    def _recording_url(self, command: GetRecordingUrlCommand) -> dict[str, Any]:
        call = self._calls.get_call(command.callid)
        if call is None:
            raise CommandError("not_found", f"no call {command.callid}")
        key = call.get("recording_key")
        if not key or self._recordings is None:
            reason = call.get("recording_rejected") or "the recording is not archived (yet)"
            raise CommandError("not_found", reason)
        return {"url": self._recordings.url_for(key, command.expires_in), "expires_in": command.expires_in}

    def _issue_widget_token(self, command: IssueWidgetTokenCommand) -> dict[str, Any]:
        if self._issue_token is None:
            raise CommandError("not_configured", "no widget token key is configured (WIDGET_TOKEN_KEY_PARAMETER)")
        # One token, one PBX login: whatever form the CRM names the user in, and only a user the
        # directory knows (a token for a mistyped login would open a widget nobody's calls reach).
        directory = self._directory_store().snapshot(self._region, departments=False)
        login = directory.resolve(command.user)
        if login is None or not directory.is_active(login):
            raise CommandError("not_found", f"no active PBX user {command.user} (run syncDirectory first?)")
        token, expires_at = self._issue_token(login, command.ttl)
        return {"login": login, "token": token, "expires_at": expires_at}

    def _list_callbacks(self, command: ListCallbacksCommand) -> dict[str, Any]:
        if self._callbacks is None:
            raise CommandError("not_configured", "the call-backs table is not configured (CALLBACKS_TABLE)")
        page = list_callbacks(
            self._callbacks, self._owner(command.owner), CallbackStatus(command.status), command.limit, command.cursor
        )
        return {
            "callbacks": [callback.model_dump(mode="json", exclude_none=True) for callback in page.callbacks],
            "cursor": page.cursor,
        }

    def _calendar_store(self) -> CalendarStore:
        if self._calendars is None:
            raise CommandError("not_configured", "the directory table is not configured (DIRECTORY_TABLE)")
        return self._calendars

    def _set_working_hours(self, command: SetWorkingHoursCommand) -> dict[str, Any]:
        from pbxbridge.domain.working_time import WorkingCalendar, WorkingTimeError

        store = self._calendar_store()
        if command.calendar is None:
            store.delete_working_calendar()
            return self._get_working_hours(GetWorkingHoursCommand(cmd="getWorkingHours"))
        given = command.calendar if isinstance(command.calendar, str) else command.calendar.model_dump()
        try:
            calendar = WorkingCalendar.read(given)
        except WorkingTimeError as exc:
            raise CommandError("invalid_request", f"calendar: {exc}") from None
        store.save_working_calendar(calendar)
        return {"calendar": calendar.model_dump(mode="json"), "compact": calendar.compact(), "source": "command"}

    def _get_working_hours(self, command: GetWorkingHoursCommand) -> dict[str, Any]:
        from pbxbridge.domain.working_time import WorkingCalendar, WorkingTimeError

        calendar, source = self._calendar_store().working_calendar(), "command"
        if calendar is None and self._default_calendar:
            try:
                calendar, source = WorkingCalendar.read(self._default_calendar), "parameter"
            except WorkingTimeError as exc:
                raise CommandError("not_configured", f"the WorkingHours parameter is not a calendar: {exc}") from None
        if calendar is None:
            return {"calendar": None, "compact": None, "source": "none"}
        return {"calendar": calendar.model_dump(mode="json"), "compact": calendar.compact(), "source": source}

    def _calendar_in_force(self) -> WorkingCalendar:
        from pbxbridge.domain.reports import DEFAULT_ZONE
        from pbxbridge.domain.working_time import WorkingCalendar, WorkingTimeError, tenant_calendar

        stored = self._calendars.working_calendar() if self._calendars is not None else None
        try:
            default = WorkingCalendar.read(self._default_calendar) if self._default_calendar else None
        except WorkingTimeError as exc:
            raise CommandError("not_configured", f"the WorkingHours parameter is not a calendar: {exc}") from None
        return tenant_calendar(stored, default, DEFAULT_ZONE)

    def _report(self, command: ReportCommand) -> dict[str, Any]:
        from datetime import UTC, datetime

        from pbxbridge.domain.directory import visible_logins
        from pbxbridge.domain.reports import PeriodError, period_days, team_report
        from pbxbridge.domain.working_time import zone_of

        if self._reports is None:
            raise CommandError("not_configured", "the reports table is not configured (REPORTS_TABLE)")
        calendar = self._calendar_in_force()
        today = datetime.now(UTC).astimezone(zone_of(calendar.zone)).date()
        try:
            days = period_days(command.period, command.from_, command.to, today)
        except PeriodError as exc:
            raise CommandError("invalid_request", str(exc)) from None
        directory = self._directory_store().snapshot(self._region) if self._directory is not None else None
        visible: frozenset[str] | None = None
        if command.viewer is not None:
            if directory is None:
                raise CommandError("not_configured", "a viewer needs the directory (DIRECTORY_TABLE)")
            visible = visible_logins(directory.user(directory.resolve(command.viewer)), directory)
        users = directory.users if directory is not None else ()
        departments = {user.login: user.groups for user in users}
        names = {user.login: user.real_name for user in users if user.real_name}
        department_names = {d.id: d.real_name for d in directory.departments if d.real_name} if directory else {}
        aggregates = self._reports.aggregates(days)
        return {
            "from": days[0].isoformat(),
            "to": days[-1].isoformat(),
            "zone": calendar.zone,
            **team_report(aggregates, visible, departments, days, names, department_names),
        }

    def _rebuild_reports(self, command: RebuildReportsCommand) -> dict[str, Any]:
        from datetime import UTC, datetime, time, timedelta

        from pbxbridge.domain.reports import PeriodError, call_contribution, callback_contribution, period_days
        from pbxbridge.domain.working_time import zone_of

        if self._reports is None or self._scan_calls is None or self._scan_callbacks is None:
            raise CommandError("not_configured", "the reports or call-backs table is not configured")
        calendar = self._calendar_in_force()
        zone = zone_of(calendar.zone)
        try:
            days = period_days(command.period, command.from_, command.to, datetime.now(UTC).astimezone(zone).date())
        except PeriodError as exc:
            raise CommandError("invalid_request", str(exc)) from None

        def utc(day: Any) -> str:
            moment = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

        start, end = utc(days[0]), utc(days[-1] + timedelta(days=1))
        phase, _, cursor = (command.cursor or "calls:").partition(":")
        if phase not in ("calls", "callbacks"):
            raise CommandError("invalid_request", "cursor: not one we handed out")
        counted = {"calls": 0, "callbacks": 0, "changed": 0}
        page_cursor: str | None = cursor or None
        # A budget of items read (a Scan reads the whole table, the filter keeps the period's).
        for _ in range(max(1, command.limit // SCAN_PAGE)):
            scan = self._scan_calls if phase == "calls" else self._scan_callbacks
            items, page_cursor = scan(start, end, SCAN_PAGE, page_cursor)
            for item in items:
                if phase == "calls":
                    source, contribution = f"call#{item['callid']}", call_contribution(item, calendar)
                else:
                    source, contribution = f"callback#{item['id']}", callback_contribution(item, calendar)
                counted[phase] += 1
                counted["changed"] += int(self._reports.recount(source, contribution))
            if page_cursor is None:
                if phase == "callbacks":
                    return {**counted, "cursor": None}
                phase = "callbacks"
        return {**counted, "cursor": f"{phase}:{page_cursor or ''}"}


__all__ = ["CallReader", "CommandError", "CommandService", "Pbx", "ReportReader"]
