"""Contacts: who a client is and which manager owns them, keyed by E.164 phone."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pbxbridge.phones import InvalidPhoneError, normalize_phone


class Contact(BaseModel):
    """A CRM contact as stored: `phone` is E.164."""

    # `responsible` is often an extension, and CRMs write it as a number.
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True, coerce_numbers_to_str=True)

    phone: str
    contact_name: str = Field(min_length=1, max_length=512)
    responsible: str | None = Field(default=None, max_length=256)
    crm_id: str | None = Field(default=None, max_length=256)
    phone_raw: str | None = None
    lead: bool = False
    created_by: str | None = None  # a scenario's name, for contacts pbxbridge created itself

    @field_validator("responsible", "crm_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class ContactStore(Protocol):
    def get_contact(self, phone_e164: str) -> Contact | None:
        """One read: the contact for this number, or None."""
        ...

    def get_contacts(self, phones: Iterable[str]) -> dict[str, Contact]:
        """Several contacts by number, read in batches; numbers nobody knows are left out."""
        ...

    def put_contacts(self, contacts: Iterable[Contact]) -> int:
        """Batch-write contacts (last one wins per phone); returns how many were written."""
        ...

    def delete_contact(self, phone_e164: str) -> bool:
        """Forget a contact; True when there was one."""
        ...

    def create_contact_if_absent(self, contact: Contact) -> bool:
        """One conditional write: True when no contact had this phone and this one was created."""
        ...


def lookup_contact(store: ContactStore, phone_e164: str) -> Contact | None:
    return store.get_contact(phone_e164)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    position: int  # the line in a CSV file, the index in a list
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: int
    rejected: list[RejectedRow]


def read_contacts(
    records: Iterable[tuple[int, Mapping[str, Any]]], region: str, unit: str = "line"
) -> Iterator[Contact | RejectedRow]:
    """Contacts from (position, fields) records; a RejectedRow for each that cannot be taken.

    A second record for a phone already given is rejected too, so nothing is overwritten silently.
    """
    seen: dict[str, int] = {}
    for position, row in records:
        raw_phone = str(row.get("phone") or "").strip()
        try:
            phone = normalize_phone(raw_phone, region)
        except InvalidPhoneError:
            yield RejectedRow(position, f"phone {raw_phone!r} is not a phone number")
            continue
        if phone.e164 in seen:
            yield RejectedRow(position, f"phone {phone.e164} already given on {unit} {seen[phone.e164]}")
            continue
        try:
            contact = Contact(
                phone=phone.e164,
                phone_raw=raw_phone,
                contact_name=row.get("contact_name") or "",
                responsible=row.get("responsible"),
                crm_id=row.get("crm_id"),
            )
        except ValidationError as exc:
            fields = ", ".join(sorted({str(err["loc"][0]) for err in exc.errors()}))
            yield RejectedRow(position, f"invalid {fields}")
            continue
        seen[phone.e164] = position
        yield contact


def save_contacts(store: ContactStore, items: Iterable[Contact | RejectedRow]) -> ImportReport:
    rejected: list[RejectedRow] = []

    def accepted() -> Iterator[Contact]:
        for item in items:
            if isinstance(item, RejectedRow):
                rejected.append(item)
            else:
                yield item

    imported = store.put_contacts(accepted())
    return ImportReport(imported=imported, rejected=rejected)
