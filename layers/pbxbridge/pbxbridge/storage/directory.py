"""The PBX's directory: the Directory table, (`kind` = user | department, `id`) -> the PBX's view of
a user or a department, and what is set by hand: a user's CRM user, role and departments.

A user item's attributes: the PBX's (`real_name`, `ext`, `telnum`, `email`, `groups`, `active`,
`pbx_role`, `synced_at`), written by the sync; the mapping's (`crm_user`, `role`, `departments`),
written by `mapUser` only, so that a sync never undoes them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pbxbridge.domain.directory import ROLES, Department, Directory, PbxUser, Role, RoleChanges
from pbxbridge.storage.dynamodb import (
    Update,
    is_condition_failure,
    parse_utc_iso,
    query_all,
    unavailable_on_aws_errors,
    utc_iso,
    wire_item,
)


class DynamoDirectoryStore:
    """The directory table: (`kind` = user | department, `id`) -> the PBX's view, and a user's CRM user."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self._table = table

    def _query(self, kind: str) -> list[dict[str, Any]]:
        return query_all(
            self._client,
            TableName=self._table,
            KeyConditionExpression="#k = :k",
            ExpressionAttributeNames={"#k": "kind"},
            ExpressionAttributeValues={":k": {"S": kind}},
        )

    @unavailable_on_aws_errors
    def snapshot(self, region: str, departments: bool = True) -> Directory:
        users = tuple(
            PbxUser(
                login=item["id"],
                real_name=item.get("real_name"),
                ext=item.get("ext"),
                telnum=item.get("telnum"),
                email=item.get("email"),
                presence=item.get("presence"),
                presence_at=parse_utc_iso(item["synced_at"])
                if item.get("presence") and item.get("synced_at")
                else None,
                groups=tuple(item.get("groups", [])),
                crm_user=item.get("crm_user"),
                active=bool(item.get("active", True)),
                pbx_role=item.get("pbx_role"),
                role_override=_role(item.get("role")),
                departments_override=tuple(item["departments"]) if "departments" in item else None,
            )
            for item in self._query("user")
        )
        return Directory(users=users, departments=self.departments() if departments else (), region=region)

    @unavailable_on_aws_errors
    def departments(self) -> tuple[Department, ...]:
        """The departments alone (one Query): their names, for a view whose users are cached."""
        return tuple(
            Department(id=item["id"], real_name=item.get("real_name"), ext=item.get("ext"))
            for item in self._query("department")
        )

    @unavailable_on_aws_errors
    def save_user(self, user: PbxUser, pbx_says_role: bool = False) -> None:
        update = Update()
        for name in ("real_name", "ext", "telnum", "email", "presence"):
            update.set(name, getattr(user, name))
        update.set("groups", list(user.groups))
        update.set("active", True)
        update.set("synced_at", utc_iso(datetime.now(tz=UTC), precise=True))
        if pbx_says_role and user.pbx_role:
            update.set("pbx_role", user.pbx_role)
        expression = update.expression()
        if pbx_says_role and not user.pbx_role:
            update.names["#pr"] = "pbx_role"
            expression += " REMOVE #pr"  # the PBX says this user has none (any more)
        self._client.update_item(
            TableName=self._table,
            Key={"kind": {"S": "user"}, "id": {"S": user.login}},
            UpdateExpression=expression,
            ExpressionAttributeNames=update.names,
            ExpressionAttributeValues=update.values,
        )

    @unavailable_on_aws_errors
    def save_department(self, department: Department) -> None:
        item = {"kind": "department", "id": department.id, "real_name": department.real_name, "ext": department.ext}
        self._client.put_item(TableName=self._table, Item=wire_item(item))

    @unavailable_on_aws_errors
    def deactivate_users(self, logins: Iterable[str]) -> None:
        for login in logins:
            self._client.update_item(
                TableName=self._table,
                Key={"kind": {"S": "user"}, "id": {"S": login}},
                UpdateExpression="SET #a = :f",
                ExpressionAttributeNames={"#a": "active"},
                ExpressionAttributeValues={":f": {"BOOL": False}},
            )

    @unavailable_on_aws_errors
    def map_user(self, login: str, crm_user: str | None) -> bool:
        expression = "SET #c = :c" if crm_user else "REMOVE #c"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"kind": {"S": "user"}, "id": {"S": login}},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(#i)",
            "ExpressionAttributeNames": {"#c": "crm_user", "#i": "id"},
        }
        if crm_user:
            kwargs["ExpressionAttributeValues"] = {":c": {"S": crm_user}}
        try:
            self._client.update_item(**kwargs)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True

    @unavailable_on_aws_errors
    def set_role(self, login: str, changes: RoleChanges) -> bool:
        update, removed = Update(), []
        if changes.set_role:
            if changes.role is None:
                removed.append("role")
            update.set("role", changes.role)
        if changes.set_departments:
            if changes.departments is None:
                removed.append("departments")
            update.set("departments", list(changes.departments) if changes.departments is not None else None)
        expression = update.expression()
        for index, name in enumerate(removed):
            update.names[f"#r{index}"] = name
        if removed:
            expression += " REMOVE " + ", ".join(f"#r{index}" for index in range(len(removed)))
        update.names["#i"] = "id"
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"kind": {"S": "user"}, "id": {"S": login}},
            "UpdateExpression": expression.strip(),
            "ConditionExpression": "attribute_exists(#i)",
            "ExpressionAttributeNames": update.names,
        }
        if update.values:
            kwargs["ExpressionAttributeValues"] = update.values
        try:
            self._client.update_item(**kwargs)
        except ClientError as exc:
            if is_condition_failure(exc):
                return False
            raise
        return True


def _role(value: object) -> Role | None:
    # A role this version does not know (written by a newer one) counts as none set.
    for role in ROLES:
        if value == role:
            return role
    return None


def users_directory(client: Any, table: str | None, region: str) -> Directory:
    """The directory's users as the resolvers read them; an empty directory where the stack keeps none."""
    if not table:
        return Directory(region=region)
    return DynamoDirectoryStore(client, table).snapshot(region, departments=False)
