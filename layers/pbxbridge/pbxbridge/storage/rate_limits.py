"""Per-user rate limits: one DynamoDB counter per user, action and minute.

The counters live in the IdempotencyTable (the table of "requests seen lately", key `id`, TTL
`expiration`), under ids starting `rate#` that Powertools' own ids (`<function>.<name>#<hash>`)
never take. Fixed windows: a user may get up to twice the limit across a minute's boundary, which is
what a limit against a runaway script or a leaked token needs, for one conditional write per action.
"""

from __future__ import annotations

import math
import time
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.storage.dynamodb import is_condition_failure, unavailable_on_aws_errors

WINDOW_SECONDS = 60


class DynamoRateLimiter:
    def __init__(self, client: Any, table: str, window_seconds: int = WINDOW_SECONDS) -> None:
        self._client = client
        self._table = table
        self._window = window_seconds

    @unavailable_on_aws_errors
    def take(self, key: str, limit: int, now: float | None = None) -> int | None:
        """Count one action for `key`; None when it is within `limit` this window, else the seconds
        until the next window (the Retry-After)."""
        moment = now if now is not None else time.time()
        window = int(moment // self._window) * self._window
        try:
            self._add_one(f"rate#{key}#{window}", limit, window + 2 * self._window)
        except ClientError as exc:
            if not is_condition_failure(exc):
                raise
            return max(1, math.ceil(window + self._window - moment))
        return None

    def _add_one(self, item_id: str, limit: int, expiration: int) -> None:
        self._client.update_item(
            TableName=self._table,
            Key={"id": {"S": item_id}},
            UpdateExpression="ADD hits :one SET expiration = if_not_exists(expiration, :expiration)",
            ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":limit": {"N": str(limit)},
                ":expiration": {"N": str(expiration)},
            },
        )


__all__ = ["WINDOW_SECONDS", "DynamoRateLimiter"]
