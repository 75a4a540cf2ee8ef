"""The team's figures: the Reports table.

- `pk` = `day#<YYYY-MM-DD>` (the tenant's zone), `sk` = `person#<login>`: one day and person's
  aggregate: a number attribute per counter (`inbound`, `answered`, ...) and one attribute per closed
  call-back, `s#<call-back id>` = its business seconds to call back (exact percentiles).
- `pk` = `counted#call#<callid>` or `counted#callback#<id>`, `sk` = `contribution`: what that call or
  call-back last added (`day`, `login`, `counters`, `samples`) and the stream position (`seq`) it
  was worked out from.

Applying a change is one transaction: the contribution is replaced on condition that it is still
the one read (so two concurrent records cannot both apply a difference), and the aggregates get the
difference. A record older than (or the same as) the one applied last changes nothing: replays,
duplicates and reordered records leave each aggregate the sum of its items' latest contributions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.domain.reports import Aggregate, Contribution
from pbxbridge.storage.dynamodb import query_all, stream_position, unavailable_on_aws_errors

CONTRIBUTION = "contribution"
SAMPLE_PREFIX = "s#"
APPLY_ATTEMPTS = 10
DAY_READERS = 8  # the report's day queries in flight at once (the client's pool holds 10)


class ReportsConflictError(RuntimeError):
    """The same item's contribution kept changing under us: the stream hands the record back."""


def day_key(day: date) -> str:
    return f"day#{day.isoformat()}"


def person_key(login: str) -> str:
    return f"person#{login}"


def _contribution_item(source: str, seq: str, contribution: Contribution | None) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": source}, "sk": {"S": CONTRIBUTION}, "seq": {"S": seq}}
    if contribution is not None:
        item["day"] = {"S": contribution.day.isoformat()}
        item["login"] = {"S": contribution.login}
        item["counters"] = {"M": {k: {"N": str(v)} for k, v in contribution.counters.items()}}
        item["samples"] = {"M": {k: {"N": str(v)} for k, v in contribution.samples.items()}}
    return item


def _contribution(item: Mapping[str, Any]) -> Contribution | None:
    if "day" not in item:
        return None
    return Contribution(
        date.fromisoformat(item["day"]["S"]),
        item["login"]["S"],
        {k: int(v["N"]) for k, v in item.get("counters", {}).get("M", {}).items()},
        {k: int(v["N"]) for k, v in item.get("samples", {}).get("M", {}).items()},
    )


def _aggregate_update(
    table: str,
    key: tuple[date, str],
    counters: Mapping[str, int],
    set_samples: Mapping[str, int],
    removed: Iterable[str],
) -> dict[str, Any] | None:
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    adds, sets, removes = [], [], []
    for name, delta in counters.items():
        if delta:
            i = len(names)
            names[f"#a{i}"], values[f":v{i}"] = name, {"N": str(delta)}
            adds.append(f"#a{i} :v{i}")
    for callback_id, seconds in set_samples.items():
        i = len(names)
        names[f"#a{i}"], values[f":v{i}"] = SAMPLE_PREFIX + callback_id, {"N": str(seconds)}
        sets.append(f"#a{i} = :v{i}")
    for callback_id in removed:
        i = len(names)
        names[f"#a{i}"] = SAMPLE_PREFIX + callback_id
        removes.append(f"#a{i}")
    clauses = [
        f"{verb} {', '.join(parts)}" for verb, parts in (("ADD", adds), ("SET", sets), ("REMOVE", removes)) if parts
    ]
    if not clauses:
        return None
    update: dict[str, Any] = {
        "TableName": table,
        "Key": {"pk": {"S": day_key(key[0])}, "sk": {"S": person_key(key[1])}},
        "UpdateExpression": " ".join(clauses),
        "ExpressionAttributeNames": names,
    }
    if values:
        update["ExpressionAttributeValues"] = values
    return {"Update": update}


def _difference(table: str, old: Contribution | None, new: Contribution | None) -> list[dict[str, Any]]:
    """The aggregate updates that turn `old`'s contribution into `new`'s (one update per day-person)."""
    counters: dict[tuple[date, str], dict[str, int]] = {}
    set_samples: dict[tuple[date, str], dict[str, int]] = {}
    removed: dict[tuple[date, str], set[str]] = {}
    if old is not None:
        per = counters.setdefault(old.key, {})
        for name, value in old.counters.items():
            per[name] = per.get(name, 0) - value
        removed.setdefault(old.key, set()).update(old.samples)
    if new is not None:
        per = counters.setdefault(new.key, {})
        for name, value in new.counters.items():
            per[name] = per.get(name, 0) + value
        set_samples.setdefault(new.key, {}).update(new.samples)
        removed.get(new.key, set()).difference_update(new.samples)
    updates = []
    for key in counters:
        unchanged = {
            k for k, v in set_samples.get(key, {}).items() if old and old.key == key and old.samples.get(k) == v
        }
        sets = {k: v for k, v in set_samples.get(key, {}).items() if k not in unchanged}
        update = _aggregate_update(table, key, counters[key], sets, sorted(removed.get(key, ())))
        if update is not None:
            updates.append(update)
    return updates


class DynamoReportStore:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def apply(self, source: str, seq: str, contribution: Contribution | None) -> bool:
        """Make `source`'s contribution the one worked out at stream position `seq`, unless a later
        (or the same) position was applied already; True when the aggregates were brought up to it."""
        return self._replace(source, seq, contribution)

    def recount(self, source: str, contribution: Contribution | None) -> bool:
        """`rebuildReports`: make `source`'s contribution the one worked out from the table now, at the
        stream position applied last (a record still to come is newer and still applies); True when
        it changed."""
        return self._replace(source, None, contribution)

    @unavailable_on_aws_errors
    def _replace(self, source: str, seq: str | None, contribution: Contribution | None) -> bool:
        key = {"pk": {"S": f"counted#{source}"}, "sk": {"S": CONTRIBUTION}}
        for _ in range(APPLY_ATTEMPTS):
            found = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
            old = _contribution(found) if found else None
            if seq is None:
                if found is not None and old == contribution:
                    return False
                seq = found["seq"]["S"] if found is not None else stream_position("0")
            elif found is not None and found["seq"]["S"] >= seq:
                return False
            put: dict[str, Any] = {
                "TableName": self._table,
                "Item": _contribution_item(key["pk"]["S"], seq, contribution),
            }
            if found is None:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                put["ConditionExpression"] = "seq = :seen"
                put["ExpressionAttributeValues"] = {":seen": found["seq"]}
            try:
                self._client.transact_write_items(
                    TransactItems=[{"Put": put}, *_difference(self._table, old, contribution)]
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = exc.response.get("CancellationReasons") or []
                if not any(r.get("Code") in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons):
                    raise
                continue  # another record of this item got in first: read again
            return True
        raise ReportsConflictError(f"{source}: its contribution kept changing")

    @unavailable_on_aws_errors
    def aggregates(self, days: Iterable[date]) -> dict[tuple[date, str], Aggregate]:
        """Every person's aggregate on each of `days`: one query a day (O(days x people) items), up to
        eight side by side (a month's 30 in a row would be 30 round trips; the widget waits on them)."""
        from concurrent.futures import ThreadPoolExecutor

        def read(day: date) -> list[dict[str, Any]]:
            return query_all(
                self._client,
                TableName=self._table,
                KeyConditionExpression="pk = :day",
                ExpressionAttributeValues={":day": {"S": day_key(day)}},
            )

        wanted = list(days)
        found: dict[tuple[date, str], Aggregate] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(DAY_READERS, len(wanted)))) as pool:
            pages = list(pool.map(read, wanted))
        for day, items in zip(wanted, pages, strict=True):
            for item in items:
                aggregate = Aggregate()
                for name, value in item.items():
                    if name.startswith(SAMPLE_PREFIX):
                        aggregate.samples[name[len(SAMPLE_PREFIX) :]] = int(value)
                    elif isinstance(value, int) and value:
                        aggregate.counters[name] = value
                found[(day, str(item["sk"]).removeprefix("person#"))] = aggregate
        return found
