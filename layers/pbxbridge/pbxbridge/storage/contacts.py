"""The contacts: the Contacts table, `phone` (E.164) -> `contact_name`, `responsible`, `crm_id`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from pbxbridge.domain.contacts import Contact
from pbxbridge.storage.dynamodb import (
    batch_get,
    plain_item,
    put_if_absent,
    serialize,
    unavailable_on_aws_errors,
)

log = logging.getLogger(__name__)


# The attributes a contact is read with (GetItem, BatchGetItem).
_CONTACT_FIELDS: dict[str, Any] = {
    "ProjectionExpression": "#p, #n, #r, #c, #l",
    "ExpressionAttributeNames": {
        "#p": "phone",
        "#n": "contact_name",
        "#r": "responsible",
        "#c": "crm_id",
        "#l": "lead",
    },
}


class DynamoContactStore:
    def __init__(self, client: Any, contacts_table: str) -> None:
        self._client = client
        self._table = contacts_table

    @unavailable_on_aws_errors
    def get_contact(self, phone_e164: str) -> Contact | None:
        response = self._client.get_item(
            TableName=self._table,
            Key={"phone": {"S": phone_e164}},
            **_CONTACT_FIELDS,
        )
        item = response.get("Item")
        if not item:
            return None
        try:
            return Contact.model_validate(plain_item(item))
        except ValidationError as exc:
            # A row the CRM wrote badly must not cost the ringing call its answer: treat it as unknown.
            fields = sorted({str(error["loc"][0]) for error in exc.errors()})
            log.warning("unreadable contact item, answered as unknown: %s", ", ".join(fields))
            return None

    @unavailable_on_aws_errors
    def get_contacts(self, phones: Iterable[str]) -> dict[str, Contact]:
        """Several contacts by number in one BatchGetItem per 100 (the widget's call-back list), not a
        GetItem each; numbers nobody knows (or whose row is unreadable) are left out."""
        wanted = list(dict.fromkeys(phones))
        found: dict[str, Contact] = {}
        for start in range(0, len(wanted), 100):
            keys = [{"phone": {"S": phone}} for phone in wanted[start : start + 100]]
            for item in batch_get(self._client, self._table, keys, **_CONTACT_FIELDS):
                try:
                    contact = Contact.model_validate(plain_item(item))
                except ValidationError:
                    log.warning("unreadable contact item, answered as unknown")
                    continue
                found[contact.phone] = contact
        return found

    @unavailable_on_aws_errors
    def create_contact_if_absent(self, contact: Contact) -> bool:
        return put_if_absent(self._client, self._table, contact.model_dump(exclude_none=True), "phone")

    @unavailable_on_aws_errors
    def delete_contact(self, phone_e164: str) -> bool:
        """Forget a contact; True when there was one."""
        response = self._client.delete_item(
            TableName=self._table, Key={"phone": {"S": phone_e164}}, ReturnValues="ALL_OLD"
        )
        return "Attributes" in response

    @unavailable_on_aws_errors
    def put_contacts(self, contacts: Iterable[Contact]) -> int:
        count = 0
        from boto3.dynamodb.table import BatchWriter

        # boto3's BatchWriter chunks by 25 and resends unprocessed items; it takes wire-format items.
        with BatchWriter(self._table, self._client, overwrite_by_pkeys=["phone"]) as batch:
            for contact in contacts:
                item = contact.model_dump(exclude_none=True)
                batch.put_item(Item={key: serialize(value) for key, value in item.items()})
                count += 1
        return count
