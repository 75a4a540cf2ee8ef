"""`pbxbridge`: the operators' console.

    pbxbridge contacts import FILE         load the CRM's contacts from CSV or .xlsx (phone, contact_name, ...)
    pbxbridge calls show CALLID            a stored call with its event timeline, as JSON
    pbxbridge pbx COMMAND [options]        one of the PBX's eight commands, straight to the PBX
    pbxbridge invoke CMD [key=value ...]   the deployed (or local) commands function, via Lambda Invoke
    pbxbridge sync history [--period P | --start S [--end E]]   reconcile calls with the PBX's history

Tables and the phone region come from the same variables the functions read (CONTACTS_TABLE,
CALLS_TABLE, CALL_EVENTS_TABLE, PHONE_REGION), the PBX from PBX_URL, PBX_TOKEN and PBX_API (legacy,
v1 or auto: which of its two CRM APIs), the commands function from COMMANDS_FUNCTION; flags override
them all.

Exit codes: 0 done; 1 some rows rejected, the call not found, or the command answered ok=false;
2 bad input (ours or the PBX's 400); 3 unavailable (DynamoDB, the PBX, its 5xx or timeouts);
4 refused (the PBX key is wrong, or the PBX redirects: wrong tenant).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pbxbridge.pbx.models import HistoryPeriod, HistoryType

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process SIGPIPE ended: 128 + 13


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbxbridge", description="The pbxbridge operators' console.")
    groups = parser.add_subparsers(dest="group", metavar="{contacts,calls,pbx,invoke,sync}")

    contacts = groups.add_parser("contacts", help="the CRM's contacts, answered to `contact` pushes")
    contacts_cmds = contacts.add_subparsers(dest="action")
    importer = contacts_cmds.add_parser(
        "import",
        help="import contacts from a CSV or .xlsx file",
        description="Import contacts from a CSV or .xlsx whose header names phone, contact_name, responsible, "
        "crm_id. CSV may be UTF-8 (with or without a BOM), UTF-16 or Windows-1251, separated by commas, "
        "semicolons or tabs, as Excel writes it. Rows with the same phone as an earlier row are rejected, "
        "not merged.",
    )
    importer.add_argument("file", type=Path, help="CSV or .xlsx file, or - for standard input")
    importer.add_argument("--table", default=os.environ.get("CONTACTS_TABLE"), help="contacts table [CONTACTS_TABLE]")
    importer.add_argument("--region", default=os.environ.get("PHONE_REGION", "RU"), help="phone region [PHONE_REGION]")

    calls = groups.add_parser("calls", help="stored calls")
    calls_cmds = calls.add_subparsers(dest="action")
    show = calls_cmds.add_parser("show", help="a call with its event timeline, as JSON")
    show.add_argument("callid")
    show.add_argument("--calls-table", default=os.environ.get("CALLS_TABLE"), help="calls table [CALLS_TABLE]")
    show.add_argument(
        "--events-table", default=os.environ.get("CALL_EVENTS_TABLE"), help="timeline table [CALL_EVENTS_TABLE]"
    )
    _add_pbx_commands(groups)

    sync = groups.add_parser("sync", help="reconcile with the PBX")
    sync_cmds = sync.add_subparsers(dest="action")
    history_sync = sync_cmds.add_parser(
        "history",
        help="fetch the PBX's history and store every call the webhook missed",
        description="Without a range: a scheduled run (from the watermark, which it moves). With --period or "
        "--start/--end: a backfill (the watermark is left alone). Needs PBX_URL, PBX_TOKEN, CALLS_TABLE and "
        "SYNC_STATE_TABLE.",
    )
    history_sync.add_argument("--period", choices=[p.value for p in HistoryPeriod])
    history_sync.add_argument("--start", help="ISO 8601 (UTC if no offset)")
    history_sync.add_argument("--end")
    history_sync.add_argument("--url", default=os.environ.get("PBX_URL"), help="[PBX_URL]")
    history_sync.add_argument("--token", default=os.environ.get("PBX_TOKEN"), help="[PBX_TOKEN]")
    history_sync.add_argument("--api", default=os.environ.get("PBX_API") or "auto", type=_api_choice, help=_API_HELP)
    history_sync.add_argument("--verbose", action="store_true", help="log each window's progress on stderr")

    report = groups.add_parser(
        "report",
        help="the team's figures for a period (the report command)",
        description="The report command's figures per manager, per department, per day and in total: as "
        "JSON; as CSV with one row each (kind, id, name, then the same cells); or as an Excel workbook with a "
        "sheet each (Managers, Departments, Days, Total): "
        "pbxbridge report --period this_month --format xlsx -o team.xlsx",
    )
    report.add_argument(
        "--period", choices=("today", "yesterday", "this_week", "last_week", "this_month", "last_month")
    )
    report.add_argument("--from", dest="first", metavar="DATE", help="the first date (with --to), YYYY-MM-DD")
    report.add_argument("--to", dest="last", metavar="DATE", help="the last date, inclusive")
    report.add_argument("--viewer", help="answer as this PBX user sees it (a supervisor: their departments)")
    report.add_argument("--format", choices=("json", "csv", "xlsx"), default="json")
    report.add_argument("-o", "--output", type=Path, help="write to this file (default: standard output)")
    report.add_argument(
        "--function", default=os.environ.get("COMMANDS_FUNCTION"), help="function name or ARN [COMMANDS_FUNCTION]"
    )

    invoke = groups.add_parser(
        "invoke",
        help="call the commands function (Lambda Invoke)",
        description="Invoke the commands function with {'cmd': CMD, key: value, ...}. A field the command "
        "types as text stays text (user=708, callid=123); numbers, booleans, lists and objects are read as JSON; "
        "null clears a field that may be null: "
        "pbxbridge invoke makeCall user=708 phone=79101234567 requestId=crm-42",
    )
    invoke.add_argument("cmd", help="makeCall, getCall, listCalls, upsertContacts, accounts, ...")
    invoke.add_argument("fields", nargs="*", metavar="key=value")
    invoke.add_argument(
        "--function", default=os.environ.get("COMMANDS_FUNCTION"), help="function name or ARN [COMMANDS_FUNCTION]"
    )
    return parser


_API_HELP = (
    "the PBX's CRM API: legacy (/sys/crm_api.wcgp), v1 (/crmapi/v1), or auto (from the URL, else asked "
    "of the PBX with a read) [PBX_API, default auto]"
)


def _api_choice(value: str) -> str:
    choice = value.strip().lower()
    if choice not in ("legacy", "v1", "auto"):
        raise argparse.ArgumentTypeError(f"{value!r}: choose legacy, v1 or auto")
    return choice


def _pbx_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The PBX's connection options. On `pbx` with their defaults; on each of its commands again without
    defaults (SUPPRESS), so they may come after the command too: `pbxbridge pbx accounts --token X`."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url", default=default(os.environ.get("PBX_URL")), help="the PBX (https://tenant...) [PBX_URL]"
    )
    parser.add_argument(
        "--token", default=default(os.environ.get("PBX_TOKEN")), help="the PBX's key for us [PBX_TOKEN]"
    )
    parser.add_argument("--api", default=default(os.environ.get("PBX_API") or "auto"), type=_api_choice, help=_API_HELP)
    parser.add_argument(
        "--region", default=default(os.environ.get("PHONE_REGION", "RU")), help="phone region [PHONE_REGION]"
    )
    parser.add_argument("--timeout", type=float, default=default(10.0), help="read timeout, seconds")


def _add_pbx_commands(groups: Any) -> None:
    pbx = groups.add_parser("pbx", help="the PBX's own commands, sent straight to it")
    _pbx_options(pbx, defaults=True)
    shared = argparse.ArgumentParser(add_help=False)
    _pbx_options(shared, defaults=False)
    commands = pbx.add_subparsers(dest="action")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, parents=[shared])
        return parser

    command("accounts", help="the PBX's users")
    groups_cmd = command("groups", help="departments (all, or one user's)")
    groups_cmd.add_argument("--user")
    call = command("makeCall", help="ring the user, then the client")
    call.add_argument("--user", required=True, help="login, extension or direct number")
    call.add_argument("--phone", required=True)
    call.add_argument("--clid", help="caller id to show the client")
    history = command("history", help="call history as CSV (UID,type,client,account,via,start,wait,duration,record)")
    history.add_argument("--start", help="ISO 8601 or YYYYmmddTHHMMSSZ (UTC)")
    history.add_argument("--end")
    history.add_argument("--period", choices=[p.value for p in HistoryPeriod])
    history.add_argument("--type", default="all", choices=[t.value for t in HistoryType])
    history.add_argument("--limit", type=int)
    subscribe = command("subscribeOnCalls", help="switch a user's group calls on or off")
    subscribe.add_argument("--user", required=True)
    subscribe.add_argument("--group-id")
    subscribe.add_argument("--status", required=True, choices=["on", "off"])
    status = command("subscriptionStatus", help="is a user taking a group's calls")
    status.add_argument("--user", required=True)
    status.add_argument("--group-id", required=True)
    set_dnd = command("set_dnd", help="do not disturb on or off")
    set_dnd.add_argument("--user", required=True)
    set_dnd.add_argument("--state", required=True, choices=["true", "false"])
    get_dnd = command("get_dnd", help="a user's do-not-disturb state")
    get_dnd.add_argument("--user", required=True)
    command("listCallerIds", help="the numbers the PBX allows as caller id (crmapi/v1)")


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "pbxbridge")
    parser = _parser()
    args = parser.parse_args(argv)
    if args.group is None or getattr(args, "action", "") is None:
        # `pbxbridge` or `pbxbridge pbx` alone: what there is to do, not a complaint.
        helper = parser if args.group is None else _subparser(parser, args.group)
        helper.print_help()
        return EXIT_OK if args.group is None and not argv else EXIT_USAGE
    try:
        return _run(args)
    except BrokenPipeError:
        # `pbxbridge pbx history ... | head`: the reader has all it wanted. Quiet, as `cat` would be;
        # stdout goes to /dev/null so the interpreter's final flush cannot complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps the subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    return parser


def _run(args: argparse.Namespace) -> int:
    from pbxbridge.storage.dynamodb import StoreUnavailableError

    try:
        if args.group == "contacts":
            return _import_contacts(args)
        if args.group == "pbx":
            return _pbx(args)
        if args.group == "invoke":
            return _invoke(args)
        if args.group == "report":
            return _report(args)
        if args.group == "sync":
            return _sync_history(args)
        return _show_call(args)
    except StoreUnavailableError as exc:
        print(f"pbxbridge: DynamoDB unavailable ({exc})", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _require(value: str | None, what: str) -> str:
    if not value:
        print(f"pbxbridge: {what} is not set", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    return value


def _import_contacts(args: argparse.Namespace) -> int:
    from pbxbridge.contacts_files import UnreadableFileError, read_contacts_file
    from pbxbridge.domain.contacts import read_contacts, save_contacts
    from pbxbridge.storage.contacts import DynamoContactStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    table = _require(args.table, "the contacts table (--table or CONTACTS_TABLE)")
    name = str(args.file)
    try:
        if name == "-":
            contacts_file = read_contacts_file(sys.stdin.buffer)
        else:
            with args.file.open("rb") as source:
                contacts_file = read_contacts_file(source, name)
    except OSError as exc:
        print(f"pbxbridge: cannot read {name}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except UnreadableFileError as exc:
        print(f"pbxbridge: {name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"pbxbridge: reading {name} as {contacts_file.kind}", file=sys.stderr)
    if contacts_file.missing:
        found = ", ".join(contacts_file.columns) or "none"
        print(
            f"pbxbridge: {name}: header lacks column(s): {', '.join(contacts_file.missing)} (found: {found}); "
            "the header names phone, contact_name, responsible, crm_id",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = DynamoContactStore(dynamodb_client(), table)
    report = save_contacts(store, read_contacts(contacts_file.records, args.region))
    print(f"imported {report.imported} contact(s), rejected {len(report.rejected)}")
    for row in report.rejected:
        print(f"  line {row.position}: {row.reason}")
    return EXIT_PARTIAL if report.rejected else EXIT_OK


def _show_call(args: argparse.Namespace) -> int:
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    store = DynamoCallStore(
        dynamodb_client(),
        _require(args.calls_table, "the calls table (--calls-table or CALLS_TABLE)"),
        _require(args.events_table, "the timeline table (--events-table or CALL_EVENTS_TABLE)"),
    )
    call = store.get_call(args.callid)
    if call is None:
        print(f"pbxbridge: no call {args.callid}", file=sys.stderr)
        return EXIT_PARTIAL
    call["timeline"] = store.timeline(args.callid)
    print(json.dumps(call, ensure_ascii=False, indent=2, sort_keys=True))
    return EXIT_OK


def _pbx(args: argparse.Namespace) -> int:
    from pbxbridge.pbx import PbxError, PbxInvalidParametersError, PbxUnavailableError, make_client
    from pbxbridge.phones import InvalidPhoneError
    from pbxbridge.protocol.commands import InvalidCommandError, read_command

    url = _require(args.url, "the PBX (--url or PBX_URL)")
    token = _require(args.token, "the PBX key (--token or PBX_TOKEN)")
    action = args.action
    try:
        with make_client(url, token, args.api, region=args.region, read_timeout=args.timeout) as client:
            if action == "history":
                fields = {k: v for k, v in (("start", args.start), ("end", args.end), ("period", args.period)) if v}
                command = read_command(
                    {"cmd": "history", **fields, "type": args.type, "limit": args.limit or 5000}, args.region
                )
                return _print_history(
                    client.history(
                        start=command.start,
                        end=command.end,
                        period=command.period,
                        call_type=command.type,
                        limit=args.limit,
                    )
                )
            result: Any
            if action == "accounts":
                result = [a.model_dump(exclude_none=True) for a in client.accounts()]
            elif action == "groups":
                result = [g.model_dump(exclude_none=True) for g in client.groups(args.user)]
            elif action == "makeCall":
                result = client.make_call(args.phone, args.user, args.clid).model_dump(exclude={"raw"})
            elif action == "subscribeOnCalls":
                client.subscribe_on_calls(args.user, args.status == "on", args.group_id)
                result = {"status": args.status}
            elif action == "subscriptionStatus":
                result = {"status": "on" if client.subscription_status(args.user, args.group_id) else "off"}
            elif action == "set_dnd":
                client.set_dnd(args.user, args.state == "true")
                result = {"state": args.state == "true"}
            elif action == "listCallerIds":
                result = {"caller_ids": [c.model_dump() for c in client.list_caller_ids()]}
            else:
                result = {"state": client.get_dnd(args.user)}
    except (InvalidCommandError, InvalidPhoneError, ValueError) as exc:
        # ValueError: a PBX URL that is not http(s)://host...
        print(f"pbxbridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PbxError as exc:
        print(f"pbxbridge: {exc.code}: {exc.message}", file=sys.stderr)
        if isinstance(exc, PbxInvalidParametersError) or exc.code == "invalid_request":
            return EXIT_USAGE  # the PBX's 400, or what its API cannot do at all
        return EXIT_UNAVAILABLE if isinstance(exc, PbxUnavailableError) else EXIT_REFUSED
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return EXIT_OK


def _print_history(rows: Any) -> int:
    import csv

    from pbxbridge.pbx.models import RejectedHistoryRow

    writer = csv.writer(sys.stdout, lineterminator="\n")
    rejected = 0
    for row in rows:
        if isinstance(row, RejectedHistoryRow):
            rejected += 1
            print(f"pbxbridge: line {row.line}: {row.reason}", file=sys.stderr)
            continue
        writer.writerow(
            [
                row.uid,
                row.type,
                row.client,
                row.account,
                row.via,
                row.start.isoformat(),
                row.wait,
                row.duration,
                row.record or "",
                *([row.rating] if row.rating else []),
            ]
        )
    return EXIT_PARTIAL if rejected else EXIT_OK


def _sync_history(args: argparse.Namespace) -> int:
    import logging

    from pbxbridge.history_sync import InvalidSyncRequestError, default_reconciler, run_sync
    from pbxbridge.pbx import PbxError, make_client
    from pbxbridge.settings import history_sync_settings

    service_log = logging.getLogger("pbxbridge")
    for handler in service_log.handlers:  # the report is stdout's; logs go to stderr
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    # The report is printed once, below; the function's own "history reconciled" line would repeat it.
    service_log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = history_sync_settings()
    except ValueError as exc:
        print(f"pbxbridge: the environment lacks what the sync needs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    url = _require(args.url, "the PBX (--url or PBX_URL)")
    token = _require(args.token, "the PBX key (--token or PBX_TOKEN)")
    event = {k: v for k, v in (("period", args.period), ("start", args.start), ("end", args.end)) if v}
    try:
        client = make_client(url, token, args.api, region=settings.phone_region, history_read_timeout=300)
        reconciler, _ = default_reconciler(pbx=client)
        report = run_sync(event, reconciler=reconciler)
    except (InvalidSyncRequestError, ValueError) as exc:
        # ValueError: a PBX URL that is not http(s)://host...
        print(f"pbxbridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PbxError as exc:
        print(f"pbxbridge: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED if exc.code in ("invalid_token", "wrong_tenant") else EXIT_UNAVAILABLE
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return EXIT_PARTIAL if report["rejected"] else EXIT_OK


def _invoke(args: argparse.Namespace) -> int:
    from pbxbridge import client as commands

    function = _require(args.function, "the commands function (--function or COMMANDS_FUNCTION)")
    try:
        fields = commands.command_fields(args.cmd, args.fields)
    except ValueError as exc:
        print(f"pbxbridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        envelope = commands.CommandsClient(function).send({"cmd": args.cmd, **fields})
    except commands.InvokeError as exc:
        print(f"pbxbridge: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(json.dumps(envelope, ensure_ascii=False, indent=2, default=str))
    if envelope["ok"]:
        return EXIT_OK
    return _INVOKE_EXIT.get(type(commands.error_from_envelope(envelope)).__name__, EXIT_PARTIAL)


def _report(args: argparse.Namespace) -> int:
    from pbxbridge import client as commands

    function = _require(args.function, "the commands function (--function or COMMANDS_FUNCTION)")
    request: dict[str, Any] = {"cmd": "report"}
    for name, value in (("period", args.period), ("from", args.first), ("to", args.last), ("viewer", args.viewer)):
        if value:
            request[name] = value
    try:
        envelope = commands.CommandsClient(function).send(request)
    except commands.InvokeError as exc:
        print(f"pbxbridge: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if not envelope["ok"]:
        print(json.dumps(envelope, ensure_ascii=False, indent=2), file=sys.stderr)
        return _INVOKE_EXIT.get(type(commands.error_from_envelope(envelope)).__name__, EXIT_PARTIAL)
    result = envelope["result"]
    if args.format == "xlsx":
        if args.output is None and sys.stdout.isatty():
            print("pbxbridge: a workbook is not for a terminal: give --output FILE (or redirect)", file=sys.stderr)
            return EXIT_USAGE
        return _write_output(args.output, _report_workbook(result))
    if args.format == "json":
        text = json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    else:
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["kind", "id", "name", *_report_cells(result)])
        for kind, _, columns, rows in _report_sheets(result):
            for row in rows:
                ident = "" if kind == "total" else row[columns[0]]
                name = row.get("name", "")
                writer.writerow([kind, ident, name, *("" if row[c] is None else row[c] for c in _report_cells(result))])
        text = out.getvalue()
    return _write_output(args.output, text.encode())


def _write_output(path: Path | None, data: bytes) -> int:
    if path is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return EXIT_OK
    try:
        path.write_bytes(data)
    except OSError as exc:
        print(f"pbxbridge: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _report_cells(result: dict[str, Any]) -> list[str]:
    """The figures' columns, in the report's own order (the total has them all, and only them)."""
    return list(result["total"])


def _report_sheets(result: dict[str, Any]) -> list[tuple[str, str, list[str], list[dict[str, Any]]]]:
    """The report's tables, each (kind, sheet, columns, rows), shared by the CSV and the workbook so
    both carry the same cells as the JSON."""
    cells = _report_cells(result)
    return [
        ("manager", "Managers", ["login", "name", *cells], result["managers"]),
        ("department", "Departments", ["department", "name", *cells], result["departments"]),
        ("day", "Days", ["day", *cells], result.get("days", [])),
        ("total", "Total", cells, [result["total"]]),
    ]


# Cells shown as a share (0..1 in the JSON) and as dates; every other figure is a plain number.
_SHARES = frozenset({"missed_share"})


def _report_workbook(result: dict[str, Any]) -> bytes:
    import io
    from datetime import date

    from openpyxl import Workbook  # the console extra; paid only by an xlsx export
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for _, title, columns, rows in _report_sheets(result):
        sheet = book.create_sheet(title)
        sheet.append(columns)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        for row in rows:
            values = [date.fromisoformat(row[c]) if c == "day" else row[c] for c in columns]
            sheet.append(values)
            for column, cell in zip(columns, sheet[sheet.max_row], strict=True):
                if column in _SHARES:
                    cell.number_format = "0.0%"
                elif column == "day":
                    cell.number_format = "yyyy-mm-dd"
        for index, column in enumerate(columns, start=1):
            longest = max([len(column), *(len(str(row[column] if row[column] is not None else "")) for row in rows)])
            sheet.column_dimensions[get_column_letter(index)].width = min(max(longest + 2, 8), 40)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# An invoke's error, by its exception's name, as the `pbx` commands exit for the same failure.
_INVOKE_EXIT = {
    "InvalidRequestError": EXIT_USAGE,
    "InvalidParametersError": EXIT_USAGE,
    "PbxUnavailableError": EXIT_UNAVAILABLE,
    "UnavailableError": EXIT_UNAVAILABLE,
    "PbxRefusedError": EXIT_REFUSED,
}


if __name__ == "__main__":
    raise SystemExit(main())
