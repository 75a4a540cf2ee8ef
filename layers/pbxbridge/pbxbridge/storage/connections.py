"""The widget's open WebSocket connections (ConnectionsTable).

`connection_id` -> the PBX login its token named, and `expires_at` (TTL: the token's expiry, or
API Gateway's two-hour limit on a connection, whichever is sooner). GSI `by_login` lists a user's
open connections (keys only: the card needs nothing else).

A user holds at most MAX_CONNECTIONS_PER_LOGIN connections: each connection claims one of that many
**slots** (items `slot#<login>#<n>`, no `login` attribute, so never in `by_login`), the slot and the
connection written in one transaction whose condition is that the slot is free. Concurrent connects
can never claim the same slot, so the cap holds however many arrive at once. A slot is free when it
has no item, or when its connection's expiry has passed (a `$disconnect` that never came, or the
connection item swept by the TTL first); a connection that goes (`$disconnect`, or a post answered
410) frees its slot at once.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.storage.dynamodb import batch_get, query_all, unavailable_on_aws_errors

BY_LOGIN_INDEX = "by_login"
# API Gateway closes a WebSocket connection after two hours whatever happens on it.
MAX_CONNECTION_SECONDS = 2 * 3600
# A person has a few tabs open; one token opening hundreds would make every card of theirs hold up
# everyone's in the stream. The cap at `$connect`, and (for connections from before it) at delivery.
MAX_CONNECTIONS_PER_LOGIN = 10
SLOT_PREFIX = "slot#"


def slot_key(login: str, slot: int) -> str:
    return f"{SLOT_PREFIX}{login}#{slot}"


class DynamoConnectionStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def connected(
        self,
        connection_id: str,
        login: str,
        token_expires_at: int,
        now: float | None = None,
        limit: int | None = MAX_CONNECTIONS_PER_LOGIN,
    ) -> bool:
        """Keep the connection, if the user has a free slot (`limit` None: no cap, for connections
        stored as before the cap). False when all `limit` slots are taken by live connections."""
        moment = int(now if now is not None else time.time())
        expires = min(token_expires_at, moment + MAX_CONNECTION_SECONDS)
        item = {
            "connection_id": {"S": connection_id},
            "login": {"S": login},
            "connected_at": {"N": str(moment)},
            "expires_at": {"N": str(expires)},
        }
        if limit is None:
            self._client.put_item(TableName=self._table, Item=item)
            return True
        for slot in self._free_slots(login, limit, moment):
            key = slot_key(login, slot)
            claim = {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "connection_id": {"S": key},
                        "holder": {"S": connection_id},
                        "expires_at": {"N": str(expires)},
                    },
                    # Free: never taken, or its connection's life is over.
                    "ConditionExpression": "attribute_not_exists(connection_id) OR expires_at < :now",
                    "ExpressionAttributeValues": {":now": {"N": str(moment)}},
                }
            }
            try:
                self._client.transact_write_items(
                    TransactItems=[claim, {"Put": {"TableName": self._table, "Item": {**item, "slot": {"S": key}}}}]
                )
            except ClientError as exc:
                if _slot_taken(exc):
                    continue  # another connect took it between our read and our write: the next one
                raise
            return True
        return False

    def _free_slots(self, login: str, limit: int, now: int) -> list[int]:
        """The slots free as one consistent read sees them, in order."""
        keys = [{"connection_id": {"S": slot_key(login, n)}} for n in range(limit)]
        taken = {
            str(item["connection_id"]["S"])
            for item in batch_get(self._client, self._table, keys, ConsistentRead=True)
            if int(item.get("expires_at", {}).get("N", "0")) >= now
        }
        return [n for n in range(limit) if slot_key(login, n) not in taken]

    @unavailable_on_aws_errors
    def disconnected(self, connection_id: str) -> None:
        """Forget the connection and free its slot (once: a second call finds nothing to free)."""
        gone = self._client.delete_item(
            TableName=self._table, Key={"connection_id": {"S": connection_id}}, ReturnValues="ALL_OLD"
        ).get("Attributes", {})
        slot = gone.get("slot", {}).get("S")
        if not slot:
            return
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"connection_id": {"S": slot}},
                ConditionExpression="holder = :c",  # never a slot another connection has taken since
                ExpressionAttributeValues={":c": {"S": connection_id}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    @unavailable_on_aws_errors
    def of(self, login: str, limit: int = MAX_CONNECTIONS_PER_LOGIN) -> list[str]:
        """The user's open connections, the `limit` newest (the latest to expire); items past their
        TTL (not yet swept by DynamoDB) are left out."""
        now = int(time.time())
        items = query_all(
            self._client,
            TableName=self._table,
            IndexName=BY_LOGIN_INDEX,
            KeyConditionExpression="login = :l",
            ExpressionAttributeValues={":l": {"S": login}},
        )
        open_ = [(int(i.get("expires_at", now + 1)), str(i["connection_id"])) for i in items]
        open_ = sorted((item for item in open_ if item[0] > now), reverse=True)
        return [connection_id for _, connection_id in open_[:limit]]


def _slot_taken(exc: ClientError) -> bool:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = [str(reason.get("Code", "None")) for reason in exc.response.get("CancellationReasons", [])]
    # Our condition failed, or a concurrent transaction on the same slot won: either way, taken.
    return any(code in ("ConditionalCheckFailed", "TransactionConflict") for code in reasons)
