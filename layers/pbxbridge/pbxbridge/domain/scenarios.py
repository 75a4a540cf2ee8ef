"""The vendor document's CRM scenarios (section 4.3), each switched on by a template parameter.

- a missed inbound call from an unknown number creates a lead, owned by a senior manager;
- an outbound call to an unknown number creates a contact, owned by the caller;
- calls of PBX users with no CRM user are attributed to a default CRM user.

"Unknown" and "once per number" are one conditional write: the contact is created only if no contact
has that number, so no read is spent and a repeated or concurrent push creates it once. Reconciliation
hands over a chunk of calls at once: their numbers are read in one batch first, and only the numbers
nobody knows get their conditional write (a known number would only fail it, a request per call).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pbxbridge.domain.calls import Attribution, CallStore, Outcome, by_login, history_from_push
from pbxbridge.domain.contacts import Contact, ContactStore
from pbxbridge.protocol.webhook import HistoryPush


@dataclass(frozen=True, slots=True)
class Scenarios:
    missed_call_leads: bool = False
    lead_responsible: str | None = None  # a CRM user (or PBX login) who owns new leads
    outbound_contacts: bool = False
    default_crm_user: str | None = None


class FinishedCall(Protocol):
    """What the scenarios read of a call, from a `history` push or a history CSV row alike."""

    @property
    def direction(self) -> str: ...
    @property
    def outcome(self) -> Outcome: ...
    @property
    def client(self) -> str: ...
    @property
    def client_raw(self) -> str: ...
    @property
    def pbx_user(self) -> str | None: ...
    @property
    def crm_user(self) -> str | None: ...


def contact_to_create(history: FinishedCall, scenarios: Scenarios) -> Contact | None:
    """The contact a finished call should create if its number is unknown, or None."""
    if not history.client.startswith("+"):
        return None  # short and internal numbers are nobody's client
    if scenarios.missed_call_leads and history.direction == "in" and history.outcome is Outcome.MISSED:
        return Contact(
            phone=history.client,
            phone_raw=history.client_raw,
            contact_name=f"Lead {history.client}",
            responsible=scenarios.lead_responsible,
            lead=True,
            created_by="missed_call",
        )
    if scenarios.outbound_contacts and history.direction == "out":
        # The caller owns the client: their CRM user when mapped, else their login, never the default
        # CRM user (that one only stands in for attribution).
        mapped = history.crm_user if history.crm_user != scenarios.default_crm_user else None
        return Contact(
            phone=history.client,
            phone_raw=history.client_raw,
            contact_name=f"Client {history.client}",
            responsible=mapped or history.pbx_user,
            created_by="outbound_call",
        )
    return None


def record_finished_call(
    calls: CallStore,
    contacts: ContactStore,
    push: HistoryPush,
    received_at: datetime,
    scenarios: Scenarios,
    attribute: Attribution = by_login,
) -> tuple[bool, Contact | None]:
    """Store a `history` push, then let the scenarios create its contact if the number is unknown.

    Returns (the push was a duplicate, the contact a scenario created). The call is stored first: a
    failure after it is answered 5xx, and the PBX's retry finds the call stored and the contact to do.
    """
    history = history_from_push(push, received_at, attribute)
    duplicate = calls.save_history(history)
    contact = contact_to_create(history, scenarios)
    if contact is not None and contacts.create_contact_if_absent(contact):
        return duplicate, contact
    return duplicate, None


def scenarios_for_reconciled_calls(
    contacts: ContactStore, scenarios: Scenarios
) -> Callable[[Sequence[FinishedCall]], None]:
    """Reconciliation's hook: calls it had to create (their pushes were lost) get their scenario too."""

    def apply(calls: Sequence[FinishedCall]) -> None:
        wanted = {contact.phone: contact for call in calls if (contact := contact_to_create(call, scenarios))}
        if not wanted:
            return  # no scenario applies: nothing is read
        known = contacts.get_contacts(wanted)
        for phone, contact in wanted.items():
            if phone not in known:
                contacts.create_contact_if_absent(contact)

    return apply
