"""The widget's open WebSocket connections (ConnectionsTable).

`connection_id` -> the PBX login its token named, and `expires_at` (TTL: the token's expiry, or
API Gateway's two-hour limit on a connection, whichever is sooner). GSI `by_login` lists a user's
open connections (keys only: the card needs nothing else).
"""

from __future__ import annotations

import time
from typing import Any

from pbxbridge.storage.dynamodb import query_all, unavailable_on_aws_errors

BY_LOGIN_INDEX = "by_login"
# API Gateway closes a WebSocket connection after two hours whatever happens on it.
MAX_CONNECTION_SECONDS = 2 * 3600
# A card goes to this many of a person's widgets at most (the newest): a person has a few tabs open,
# while one token opening hundreds would make every card of theirs hold up everyone's in the stream.
MAX_CONNECTIONS_PER_LOGIN = 10


class DynamoConnectionStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def connected(self, connection_id: str, login: str, token_expires_at: int, now: float | None = None) -> None:
        moment = int(now if now is not None else time.time())
        expires = min(token_expires_at, moment + MAX_CONNECTION_SECONDS)
        self._client.put_item(
            TableName=self._table,
            Item={
                "connection_id": {"S": connection_id},
                "login": {"S": login},
                "connected_at": {"N": str(moment)},
                "expires_at": {"N": str(expires)},
            },
        )

    @unavailable_on_aws_errors
    def disconnected(self, connection_id: str) -> None:
        self._client.delete_item(TableName=self._table, Key={"connection_id": {"S": connection_id}})

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
