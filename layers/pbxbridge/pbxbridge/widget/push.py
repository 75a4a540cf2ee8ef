"""The calls' change stream -> the live card in the widgets of the people the call concerns.

A second consumer of the CallsTable stream beside StreamFunction: the card does not wait for
EventBridge or SQS, and a slow browser never holds up the call events. Posts go through the
WebSocket API's management endpoint; a connection that is gone (410) is forgotten on that first
failed post. A card is a hint for a person, not a record: a post that fails otherwise is logged and
counted, never retried (a retried batch would pop the card again in every other widget).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from pbxbridge.domain.board import BoardStore, board_call, board_change, callback_board_watchers, dnd_change, watchers
from pbxbridge.domain.card import build_card, card_change, card_update, people_of, responsible_login
from pbxbridge.domain.contacts import Contact
from pbxbridge.domain.directory import Directory
from pbxbridge.storage.dynamodb import stream_change, stream_position, utc_iso

logger = Logger()
metrics = Metrics()


class ConnectionGoneError(Exception):
    """The browser went away (API Gateway's GoneException, 410)."""


class Connections(Protocol):
    def of(self, login: str) -> list[str]: ...
    def disconnected(self, connection_id: str) -> None: ...


@dataclass(frozen=True)
class CardDependencies:
    callbacks_table: str | None
    region: str
    crm_url_template: str | None
    contact: Callable[[str], Contact | None]
    last_calls: Callable[[str], list[dict[str, Any]]]
    directory: Callable[[], Directory]
    connections: Connections
    post: Callable[[str, bytes], None]  # raises ConnectionGoneError
    clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC)  # dates the responsible's presence
    # The team's live board (its calls in progress); None where the stack keeps none.
    board: BoardStore | None = None
    board_table: str | None = None


@lru_cache(maxsize=1)
def default_dependencies() -> CardDependencies:
    import boto3
    from botocore.config import Config

    from pbxbridge.domain.directory import CachedDirectory
    from pbxbridge.storage.calls import DynamoCallStore
    from pbxbridge.storage.connections import DynamoConnectionStore
    from pbxbridge.storage.contacts import DynamoContactStore
    from pbxbridge.storage.directory import users_directory
    from pbxbridge.storage.dynamodb import dynamodb_client
    from pbxbridge.widget.settings import card_settings

    settings = card_settings()
    client = dynamodb_client()
    calls = DynamoCallStore(client, settings.calls_table, settings.call_events_table)
    contacts = DynamoContactStore(client, settings.contacts_table)
    directory = CachedDirectory(
        lambda: users_directory(client, settings.directory_table, settings.phone_region),
        ttl=settings.directory_cache_seconds,
    )
    # A person is waiting: short timeouts, one retry (a throttled or failed post, standard mode's
    # backoff under a second); at most ~3.5 s per post, and the invocation's budget stops the rest.
    management = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=settings.socket_endpoint,
        config=Config(connect_timeout=0.5, read_timeout=1, retries={"max_attempts": 2, "mode": "standard"}),
    )

    def post(connection_id: str, data: bytes) -> None:
        try:
            management.post_to_connection(ConnectionId=connection_id, Data=data)
        except management.exceptions.GoneException as exc:
            raise ConnectionGoneError(connection_id) from exc

    board: BoardStore | None = None
    if settings.board_table:
        from pbxbridge.storage.board import DynamoBoardStore

        board = DynamoBoardStore(client, settings.board_table)
    return CardDependencies(
        board=board,
        board_table=settings.board_table,
        callbacks_table=settings.callbacks_table,
        region=settings.phone_region,
        crm_url_template=settings.crm_record_url_template,
        contact=contacts.get_contact,
        last_calls=lambda phone: calls.calls_by_client(phone, limit=6).calls,
        directory=directory,
        connections=DynamoConnectionStore(client, settings.connections_table),
        post=post,
    )


def cards_for(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], deps: CardDependencies
) -> list[tuple[set[str], dict[str, Any]]]:
    """(logins, message) pairs this change of a call sends; one read of the contact, one query of the
    number's last calls (only when a card pops up)."""
    change = card_change(old, new)
    if change is None:
        return []
    directory = deps.directory()
    client = new.get("client")
    contact = deps.contact(str(client)) if client else None
    responsible = responsible_login(contact, directory)
    everyone = people_of(new, directory, responsible)
    messages: list[tuple[set[str], dict[str, Any]]] = []
    # The card pops up for whoever it has not popped up for yet: all on the first ring, then new legs.
    if change.first_ring:
        popped = everyone
    else:
        popped = {login for login in (directory.resolve(leg) for leg in change.newly_rung) if login}
    if popped:
        last = deps.last_calls(str(client)) if client else []
        card = build_card(new, contact, last, directory, deps.region, deps.crm_url_template, deps.clock())
        messages.append((popped, {"type": "card", "card": card}))
    if change.updates and (rest := everyone - popped):
        messages.append((rest, {"type": "card.update", "card": card_update(new, directory)}))
    return messages


def deliver(logins: set[str], message: dict[str, Any], deps: CardDependencies) -> int:
    """Post to every open connection of these users, in parallel; returns how many took it. A user
    the directory no longer has as active gets nothing, whatever connections they still hold (their
    token may live hours past their deactivation)."""
    data = json.dumps(message, ensure_ascii=False, default=str).encode()
    directory = deps.directory()
    people = sorted(login for login in logins if directory.still_active(login))

    def one(connection_id: str) -> bool:
        try:
            deps.post(connection_id, data)
            return True
        except ConnectionGoneError:
            metrics.add_metric(name="WidgetConnectionsGone", unit=MetricUnit.Count, value=1)
            try:
                deps.connections.disconnected(connection_id)
            except Exception:  # the TTL forgets it later; the others' cards must not be posted again
                logger.warning("a gone connection could not be forgotten", exc_info=True)
        except Exception:
            logger.exception("card not delivered", extra={"type": message["type"]})
            metrics.add_metric(name="CardPostFailures", unit=MetricUnit.Count, value=1)
        return False

    # One query per person (a department's members for a call-back), then one post per widget, side by side.
    pool = _posting_pool()
    targets = [connection for found in pool.map(deps.connections.of, people) for connection in found]
    return sum(pool.map(one, targets))


@lru_cache(maxsize=1)
def _posting_pool() -> ThreadPoolExecutor:
    """The container's one pool for the connection queries and posts (built on the first card, kept)."""
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="card-post")


def callback_watchers(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, directory: Directory) -> set[str]:
    """Whose call-back list a change of a call-back item changed: its owner before and after (a
    department's members for `g_<id>`); nobody's for the number's ledger."""
    from pbxbridge.domain.callbacks import UNASSIGNED
    from pbxbridge.storage.callbacks import callback_owner

    owners = {owner for owner in map(callback_owner, (old, new)) if owner}
    logins = {owner for owner in owners if not owner.startswith("g_") and owner != UNASSIGNED}
    departments = {owner[2:] for owner in owners if owner.startswith("g_")}
    logins |= {user.login for user in directory.users if user.active and departments & set(user.groups)}
    return logins


def board_callback_watchers(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, directory: Directory
) -> set[str]:
    """Whose board this change of a call-back item changes (`board.callbacks`: the page re-reads the
    board): when it opens, changes owner, closes or escalates, the supervisors and admins who see its
    owner before or after. Nobody for the ledger, nor for a change the board does not show (one more
    missed call, an attempt)."""
    from pbxbridge.storage.callbacks import callback_owner

    before, after = callback_owner(old), callback_owner(new)
    if before is None and after is None:
        return set()
    shown = ("owner_status", "overdue_since")
    if old is not None and new is not None and all(old.get(k) == new.get(k) for k in shown):
        return set()
    return callback_board_watchers({o for o in (before, after) if o}, directory)


def overdue_watchers(owner: str, directory: Directory) -> set[str]:
    """Who else is told that a call-back of `owner` is overdue: the supervisors who see the owner
    (`visible_logins`) or, for a department's call-back (`g_<id>`), that department; and the admins,
    of every call-back, an unassigned one (nobody's list shows it) too. The owner's own list shows it
    already. The same people whose board a change of the owner's call-backs changes."""
    return callback_board_watchers({owner}, directory) - {owner}


def overdue_notice(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The message for supervisors when this change is a call-back's one escalation (its insert)."""
    from pbxbridge.storage.overdue import overdue_event

    event = overdue_event(new) if old is None else None
    if event is None:
        return None
    return {
        "type": "callbackOverdue",
        "callback_id": event.callback_id,
        "owner": event.owner,
        "phone": event.phone,
        "overdue_since": utc_iso(event.occurred_at),
    }


def handle_record(record: DynamoDBRecord, deps: CardDependencies | None = None) -> None:
    deps = deps or default_dependencies()
    change = stream_change(record)
    if change is None:
        return
    table, old, new = change
    if deps.board_table and table == deps.board_table:
        tell_dnd(old, new, deps)
        return
    if deps.callbacks_table and table == deps.callbacks_table:
        notice = overdue_notice(old, new)
        if notice is not None:
            watchers = overdue_watchers(notice["owner"], deps.directory())
            if watchers:
                delivered = deliver(watchers, notice, deps)
                logger.info(
                    "overdue call-back told", extra={"callback_id": notice["callback_id"], "delivered": delivered}
                )
            return
        # The list is read through the widget's API (it is the user's own data): this only says "reload".
        owners_list = callback_watchers(old, new, deps.directory())
        if owners_list:
            deliver(owners_list, {"type": "callbacks"}, deps)
        board = board_callback_watchers(old, new, deps.directory())
        if board:
            deliver(board, {"type": "board.callbacks"}, deps)
        return
    if new is None:
        return
    contact = functools.cache(deps.contact)  # one read of the contact for the board and the card
    deps = replace(deps, contact=contact)
    if deps.board is not None:
        # First: a failed write fails the record (the board must not keep a call that ended), before
        # any card of it was posted.
        keep_on_board(record, old, new, deps)
    for logins, message in cards_for(old, new, deps):
        delivered = deliver(logins, message, deps)
        logger.info("card sent", extra={"type": message["type"], "callid": new["callid"], "delivered": delivered})
        metrics.add_metric(name="CardsDelivered", unit=MetricUnit.Count, value=delivered)


def tell_dnd(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, deps: CardDependencies) -> None:
    """`board.dnd` to the supervisors and admins who see the user, when their recorded DND state
    changed. Only the board's `kind=dnd` items matter: on AWS the event source's filter passes no
    other, the local stack may deliver every record."""
    if (new or {}).get("kind") != "dnd":
        return
    message = dnd_change(old, new)
    if message is None:
        return
    told = watchers({message["login"]}, deps.directory())
    if told:
        delivered = deliver(told, message, deps)
        logger.info("board told", extra={"dnd": message["dnd"]["on"], "delivered": delivered})


def keep_on_board(
    record: DynamoDBRecord, old: Mapping[str, Any] | None, new: Mapping[str, Any], deps: CardDependencies
) -> None:
    """Keep the board's item of this call (put on its first ring, changed on its answer, a tombstone
    at its end) and tell the supervisors and admins who see someone on it (`board.call`): only when
    this record's change was newer than the one kept, so a replayed or duplicated record tells no one."""
    change = board_change(old, new)
    stream = record.dynamodb
    if change is None or deps.board is None or stream is None or not stream.sequence_number:
        return
    directory = deps.directory()
    client = new.get("client")
    contact = deps.contact(str(client)) if client else None
    call = board_call(new, directory, deps.region, contact.contact_name if contact else None)
    position = stream_position(stream.sequence_number)
    if not deps.board.keep_call(change.callid, position, None if change.ended else call):
        return
    told = watchers(call["people"], directory)
    if told:
        delivered = deliver(told, {"type": "board.call", "call": call}, deps)
        logger.info("board told", extra={"callid": change.callid, "state": call["state"], "delivered": delivered})


# Left of the function's time when a record's turn comes, or its card is dropped: a card seconds
# late is worth nothing, and a timed-out batch would pop every card in it again.
RESERVE_SECONDS = 4.0


def handle_card_stream(event: dict[str, Any], context: Any, deps: CardDependencies | None = None) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    remaining = getattr(context, "get_remaining_time_in_millis", None)

    def within_budget(record: DynamoDBRecord) -> None:
        if remaining is not None and remaining() < RESERVE_SECONDS * 1000:
            metrics.add_metric(name="CardsDropped", unit=MetricUnit.Count, value=1)
            logger.warning("no time left for this card; dropped", extra={"event_id": record.event_id})
            return
        handle_record(record, deps=deps)

    response = process_partial_response(event=event, record_handler=within_budget, processor=processor, context=context)
    return dict(response)
