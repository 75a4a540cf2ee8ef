"""`pbxbridge`: the operators' console.

    pbxbridge contacts import FILE.csv     load the CRM's contacts (phone, contact_name, responsible, crm_id)
    pbxbridge calls show CALLID            a stored call with its event timeline, as JSON

Tables and the phone region come from the same variables the functions read (CONTACTS_TABLE,
CALLS_TABLE, CALL_EVENTS_TABLE, PHONE_REGION), or from flags. Exit codes: 0 done, 1 some rows
rejected or the call not found, 2 bad usage, 3 DynamoDB unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbxbridge", description="The pbxbridge operators' console.")
    groups = parser.add_subparsers(dest="group", required=True)

    contacts = groups.add_parser("contacts", help="the CRM's contacts, answered to `contact` pushes")
    contacts_cmds = contacts.add_subparsers(dest="action", required=True)
    importer = contacts_cmds.add_parser(
        "import",
        help="import contacts from a CSV file",
        description="Import contacts from a CSV whose header names phone, contact_name, responsible, crm_id. "
        "Rows with the same phone as an earlier row are rejected, not merged.",
    )
    importer.add_argument("file", type=Path, help="CSV file (UTF-8), or - for standard input")
    importer.add_argument("--table", default=os.environ.get("CONTACTS_TABLE"), help="contacts table [CONTACTS_TABLE]")
    importer.add_argument("--region", default=os.environ.get("PHONE_REGION", "RU"), help="phone region [PHONE_REGION]")

    calls = groups.add_parser("calls", help="stored calls")
    calls_cmds = calls.add_subparsers(dest="action", required=True)
    show = calls_cmds.add_parser("show", help="a call with its event timeline, as JSON")
    show.add_argument("callid")
    show.add_argument("--calls-table", default=os.environ.get("CALLS_TABLE"), help="calls table [CALLS_TABLE]")
    show.add_argument(
        "--events-table", default=os.environ.get("CALL_EVENTS_TABLE"), help="timeline table [CALL_EVENTS_TABLE]"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pbxbridge.storage.dynamodb import StoreUnavailableError

    try:
        if args.group == "contacts":
            return _import_contacts(args)
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
    from pbxbridge.domain.contacts import import_contacts
    from pbxbridge.storage.dynamodb import DynamoContactStore, dynamodb_client

    table = _require(args.table, "the contacts table (--table or CONTACTS_TABLE)")
    store = DynamoContactStore(dynamodb_client(), table)
    if str(args.file) == "-":
        report = import_contacts(store, sys.stdin, args.region)
    else:
        try:
            with args.file.open(encoding="utf-8-sig", newline="") as source:
                report = import_contacts(store, source, args.region)
        except OSError as exc:
            print(f"pbxbridge: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        except UnicodeDecodeError:
            print(f"pbxbridge: {args.file} is not UTF-8", file=sys.stderr)
            return EXIT_USAGE
    print(f"imported {report.imported} contact(s), rejected {len(report.rejected)}")
    for row in report.rejected:
        print(f"  line {row.line}: {row.reason}")
    return EXIT_PARTIAL if report.rejected else EXIT_OK


def _show_call(args: argparse.Namespace) -> int:
    from pbxbridge.storage.dynamodb import DynamoCallStore, dynamodb_client

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


if __name__ == "__main__":
    raise SystemExit(main())
