"""The tenant's working calendar: one item of the Directory table, (`kind` = `calendar`, `id` =
`tenant`), beside the users and departments it is about. The calendar is kept as its fields in JSON
(`calendar`) and, for a person reading the table, its compact form (`compact`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pbxbridge.storage.dynamodb import unavailable_on_aws_errors, utc_iso, wire_item

if TYPE_CHECKING:  # built where a calendar is read: the commands function's other commands never pay for it
    from pbxbridge.domain.working_time import WorkingCalendar

KEY = {"kind": {"S": "calendar"}, "id": {"S": "tenant"}}


class DynamoCalendarStore:
    """The tenant's working calendar in the Directory table (`setWorkingHours`, `getWorkingHours`)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    @unavailable_on_aws_errors
    def working_calendar(self) -> WorkingCalendar | None:
        """The calendar `setWorkingHours` stored, None when there is none."""
        from pbxbridge.domain.working_time import WorkingCalendar

        item = self._client.get_item(TableName=self._table, Key=KEY, ConsistentRead=True).get("Item")
        if item is None:
            return None
        return WorkingCalendar.model_validate_json(item["calendar"]["S"])

    @unavailable_on_aws_errors
    def save_working_calendar(self, calendar: WorkingCalendar) -> None:
        item = {
            "kind": "calendar",
            "id": "tenant",
            "calendar": json.dumps(calendar.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")),
            "compact": calendar.compact(),
            "updated_at": utc_iso(datetime.now(tz=UTC), precise=True),
        }
        self._client.put_item(TableName=self._table, Item=wire_item(item))

    @unavailable_on_aws_errors
    def delete_working_calendar(self) -> None:
        self._client.delete_item(TableName=self._table, Key=KEY)
