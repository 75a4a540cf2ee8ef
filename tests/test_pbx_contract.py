"""One table of contract cases for both PBX clients, so the two cannot drift.

Each case is written once, in our words (`client.set_dnd("mike", True)`), and runs against both wire
formats of the real HTTP PBX simulator: the legacy `/sys/crm_api.wcgp` (form posts, `token`) and
`crmapi/v1` (JSON, `X-API-KEY`, envelopes, inverted DND and subscription). The simulator keeps one
state for both APIs, so what a case asserts of that state means the same on either. `Wire` holds what
differs: the URL, how a command is named on the wire (to count requests and script faults).
A case that only v1 can have (paging, 501, Domain disabled, caller ids) says so in its `apis`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from local.pbx_simulator import PbxSimulator, SimulatorServer, SimUser
from pbxbridge.pbx import (
    PbxError,
    PbxIntegrationDisabledError,
    PbxInvalidParametersError,
    PbxInvalidTokenError,
    PbxKeyMisplacedError,
    PbxPagingError,
    PbxUnavailableError,
)
from pbxbridge.pbx.api import api_from_url, detect_api, forget_detected, make_client
from pbxbridge.pbx.client import LegacyPbxClient
from pbxbridge.pbx.models import HistoryRow, PbxApiKind, V1HistoryRow
from pbxbridge.pbx.v1 import V1PbxClient, looks_like_api_key, parse_v1_history_csv, parse_v1_history_json, v1_url

# The PBX's key: a UUID, as v1 keys are (the legacy API takes any string).
KEY = "0b6f3c1e-8a55-4c1b-9f0c-0242ac120002"
# What our own crm_token looks like (`openssl rand -hex 24`): pasted where the PBX's key belongs.
CRM_TOKEN = "9f0c4c1b8a550242ac1200020b6f3c1e8a554c1b9f0c0242"
FAST: dict[str, Any] = {"read_timeout": 0.5, "history_read_timeout": 0.5, "connect_timeout": 0.5, "backoff": 0.01}
T0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
PbxClient = LegacyPbxClient | V1PbxClient

# Our command -> (its legacy `cmd`, its v1 request) for counting requests and scripting faults.
ON_THE_WIRE = {
    "accounts": ("accounts", "GET /users"),
    "groups": ("groups", "GET /groups"),
    "makeCall": ("makeCall", "POST /makecall"),
    "history": ("history", "GET /history/json"),
    "get_dnd mike": ("get_dnd", "GET /users/mike/dnd"),
    # Our "DND on" is v1's DELETE.
    "set_dnd mike on": ("set_dnd", "DELETE /users/mike/dnd"),
}


@dataclass
class Wire:
    api: str
    sim: PbxSimulator
    server: SimulatorServer

    @property
    def url(self) -> str:
        return self.server.api_url if self.api == "legacy" else self.server.v1_url

    def client(self, key: str = KEY, **options: Any) -> PbxClient:
        return make_client(self.url, key, self.api, **{**FAST, **options})

    def seen(self, command: str) -> int:
        """How many requests for `command` reached the PBX (faulted ones included)."""
        legacy, v1 = ON_THE_WIRE[command]
        if self.api == "legacy":
            return sum(1 for form in self.sim.requests_seen if form.get("cmd") == legacy)
        method, route = v1.split(" ", 1)
        return sum(
            1 for request in self.sim.v1_requests_seen if request["route"] == route and request["method"] == method
        )

    def fail_next(self, command: str, *faults: str) -> None:
        legacy, v1 = ON_THE_WIRE[command]
        self.sim.fail_next(legacy if self.api == "legacy" else v1, *faults)


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    server = PbxSimulator(token=KEY).serve()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_detection() -> Iterator[None]:
    forget_detected()
    yield
    forget_detected()


def fresh(server: SimulatorServer, api: str) -> Wire:
    sim = PbxSimulator(token=KEY, base_url=server.url, play_make_call=False)
    server.simulator = sim
    return Wire(api, sim, server)


# The table


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Wire], None]
    apis: tuple[str, ...] = ("legacy", "v1")


CASES: list[Case] = []


def case(*apis: str) -> Callable[[Callable[[Wire], None]], Callable[[Wire], None]]:
    def register(run: Callable[[Wire], None]) -> Callable[[Wire], None]:
        CASES.append(Case(run.__name__, run, apis or ("legacy", "v1")))
        return run

    return register


@case()
def accounts_read_the_same(wire: Wire) -> None:
    with wire.client() as client:
        accounts = client.accounts()
    assert [(a.name, a.real_name, a.ext, a.telnum, a.email) for a in accounts] == [
        ("andy", "Петров Андрей", "708", "79261234567", "andy@example.ru"),
        ("daria", "Иванова Дария", "705", None, "daria@example.ru"),
        ("mike", "Семенов Михаил", "702", None, None),
        ("serg", "Чижиков Сергей", "709", None, None),
    ]
    # Presence is v1's: read where the PBX gives it, absent (never invented) on the old API.
    expected = ["online", "offline", "online", "away"] if wire.api == "v1" else [None] * 4
    assert [a.presence for a in accounts] == expected


@case()
def every_page_of_a_long_directory_is_read(wire: Wire) -> None:
    wire.sim.users = [SimUser(f"user{n:03d}", f"User {n}", str(100 + n)) for n in range(230)]
    with wire.client() as client:
        logins = [a.name for a in client.accounts()]
    assert logins == [f"user{n:03d}" for n in range(230)]
    assert wire.seen("accounts") == (3 if wire.api == "v1" else 1)  # v1: pages of 100


@case("v1")
def paging_that_never_ends_stops_at_the_cap_and_says_so(wire: Wire) -> None:
    wire.sim.modes.endless_pages = True
    with V1PbxClient(wire.url, KEY, max_pages=5, **FAST) as client, pytest.raises(PbxPagingError) as caught:
        client.accounts()
    assert caught.value.code == "pbx_error"
    assert "did not end within 5 pages" in caught.value.message
    assert wire.seen("accounts") == 5


@case()
def groups_all_and_of_one_user(wire: Wire) -> None:
    with wire.client() as client:
        assert [(g.id, g.real_name, g.ext) for g in client.groups()] == [
            ("sales", "Отдел продаж", "701"),
            ("gr001", "Бухгалтерия", "706"),
        ]
        assert [g.id for g in client.groups("andy")] == ["sales"]
        assert [g.id for g in client.groups("705")] == ["gr001"]  # by extension, as the CRM may name a user
        assert [g.id for g in client.groups("daria@tenant.example.ru")] == ["gr001"]


@case()
def dnd_on_means_on_in_both_directions(wire: Wire) -> None:
    with wire.client() as client:
        assert client.get_dnd("mike") is False
        client.set_dnd("mike", True)
        assert wire.sim.dnd == {"mike": True}  # we said "DND on": the PBX has DND on
        assert client.get_dnd("mike") is True
        wire.sim.dnd["mike"] = False  # the PBX says "DND off" (a user switched it on the phone)
        assert client.get_dnd("mike") is False
        wire.sim.dnd["mike"] = True
        assert client.get_dnd("mike") is True
        client.set_dnd("702", False)  # by extension
        assert wire.sim.dnd == {"mike": False}


@case("v1")
def dnd_is_inverted_on_the_v1_wire(wire: Wire) -> None:
    """What the v1 client sends and reads, pinned: `DELETE` turns DND on, `state: true` is "available"."""
    with wire.client() as client:
        client.set_dnd("mike", True)
        client.set_dnd("mike", False)
        client.get_dnd("mike")
    dnd = [(r["method"], r["route"]) for r in wire.sim.v1_requests_seen if r["route"].endswith("/dnd")]
    assert dnd == [("DELETE", "/users/mike/dnd"), ("POST", "/users/mike/dnd"), ("GET", "/users/mike/dnd")]
    wire.sim.dnd["mike"] = True
    raw = requests.get(wire.url + "/users/mike/dnd", headers={"X-API-KEY": KEY}, timeout=5).json()
    assert raw == {"state": False}  # DND on reads "not available" on the wire...
    with wire.client() as client:
        assert client.get_dnd("mike") is True  # ...and "DND on" from us


@case()
def subscription_on_means_taking_the_groups_calls(wire: Wire) -> None:
    with wire.client() as client:
        assert client.subscription_status("andy", "sales") is True
        client.subscribe_on_calls("andy", False, group_id="sales")
        assert wire.sim.subscriptions == {("andy", "sales"): False}
        assert client.subscription_status("andy", "sales") is False
        client.subscribe_on_calls("andy", True, group_id="sales")
        assert wire.sim.subscriptions == {("andy", "sales"): True}
        assert client.subscription_status("andy", "sales") is True
        wire.sim.subscriptions[("andy", "sales")] = False
        assert client.subscription_status("andy", "sales") is False
        client.subscribe_on_calls("mike", False)  # without a group: every group of the user
        assert wire.sim.subscriptions[("mike", "sales")] is False


@case("v1")
def subscription_on_the_v1_wire(wire: Wire) -> None:
    with wire.client() as client:
        client.subscribe_on_calls("andy", True, group_id="sales")
        client.subscribe_on_calls("andy", False, group_id="sales")
    sent = [(r["method"], r["query"]) for r in wire.sim.v1_requests_seen if r["route"].endswith("/subscription")]
    assert sent == [("POST", {"group_id": "sales"}), ("DELETE", {"group_id": "sales"})]


@case()
def make_call_rings_once_with_digits(wire: Wire) -> None:
    with wire.client() as client:
        result = client.make_call("8 (910) 123-45-67", "andy")
    assert result.id_known is True
    assert [(d.api, d.user, d.phone, d.callid) for d in wire.sim.dials] == [
        (wire.api, "andy", "79101234567", result.call_id)
    ]


@case()
def make_call_is_not_resent_after_a_502(wire: Wire) -> None:
    wire.fail_next("makeCall", "502", "502")
    with wire.client() as client, pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")
    assert (caught.value.request_sent, caught.value.status) == (True, 502)
    assert wire.seen("makeCall") == 1


@case()
def make_call_is_not_resent_after_a_slow_answer(wire: Wire) -> None:
    wire.fail_next("makeCall", "hang:1")
    with wire.client() as client, pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")
    assert caught.value.request_sent is True
    assert "did not answer in time" in caught.value.message
    assert wire.seen("makeCall") == 1
    wire.sim.wait_for_calls(5)


@case()
def make_call_is_not_resent_after_a_reset_connection(wire: Wire) -> None:
    wire.fail_next("makeCall", "drop")
    with wire.client() as client, pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")
    assert caught.value.request_sent is True
    assert wire.seen("makeCall") == 1
    assert wire.sim.dials == []


@case()
def a_call_placed_whose_answer_was_lost_is_never_placed_again(wire: Wire) -> None:
    """The PBX dialled, then the answer was lost (a 502, a hang, a reset): one call, and we say we may have."""
    for fault in ("after:502", "after:hang:1", "after:drop"):
        wire.sim.dials.clear()
        wire.fail_next("makeCall", fault)
        with wire.client() as client, pytest.raises(PbxUnavailableError) as caught:
            client.make_call("+79101234567", "andy")
        assert caught.value.request_sent is True, fault
        assert len(wire.sim.dials) == 1, fault


@case()
def make_call_for_an_unknown_user_is_a_bad_parameter(wire: Wire) -> None:
    with wire.client() as client, pytest.raises(PbxInvalidParametersError) as caught:
        client.make_call("+79101234567", "nobody")
    assert caught.value.code == "invalid_parameters"
    assert wire.sim.dials == []


@case()
def a_safe_read_is_retried_after_502s(wire: Wire) -> None:
    wire.fail_next("get_dnd mike", "502", "502")
    with wire.client() as client:
        assert client.get_dnd("mike") is False
    assert wire.seen("get_dnd mike") == 3


@case()
def a_dnd_switch_is_retried_after_a_reset_connection(wire: Wire) -> None:
    wire.fail_next("set_dnd mike on", "drop")
    with wire.client() as client:
        client.set_dnd("mike", True)
    assert wire.sim.dnd == {"mike": True}
    assert wire.seen("set_dnd mike on") == 2


@case()
def an_unknown_user_is_a_bad_parameter(wire: Wire) -> None:
    with wire.client() as client, pytest.raises(PbxInvalidParametersError) as caught:
        client.get_dnd("nobody")
    assert (caught.value.code, caught.value.status) == ("invalid_parameters", (wire.api == "v1" and 404) or 400)


@case()
def a_wrong_key_is_refused_and_never_shown(wire: Wire) -> None:
    wrong = "5d1e0b6f-8a55-4c1b-9f0c-0242ac120002"
    with wire.client(key=wrong) as client, pytest.raises(PbxInvalidTokenError) as caught:
        client.accounts()
    assert caught.value.code == "invalid_token"
    assert not isinstance(caught.value, PbxKeyMisplacedError)  # a key of the right shape, just wrong
    assert wrong not in caught.value.message
    assert wire.seen("accounts") == 1  # a 401 is not retried


@case("v1")
def our_crm_token_in_the_keys_place_says_which_secret_goes_where(wire: Wire) -> None:
    with wire.client(key=CRM_TOKEN) as client, pytest.raises(PbxKeyMisplacedError) as caught:
        client.accounts()
    assert caught.value.code == "invalid_token"
    assert caught.value.status == 401
    message = caught.value.message
    assert "UUID" in message
    assert "PbxTokenParameterName" in message
    assert "CrmTokenParameterName" in message
    assert CRM_TOKEN not in message
    assert CRM_TOKEN not in repr(caught.value)


@case("v1")
def domain_disabled_says_the_integration_is_off_in_the_cabinet(wire: Wire) -> None:
    wire.sim.modes.domain_disabled = True
    with wire.client() as client, pytest.raises(PbxIntegrationDisabledError) as caught:
        client.get_dnd("mike")
    assert caught.value.code == "invalid_token"
    assert "switched off in the PBX cabinet" in caught.value.message
    with wire.client(key=CRM_TOKEN) as client, pytest.raises(PbxIntegrationDisabledError):
        client.accounts()  # whatever the key: the cabinet is what to fix first


def _three_calls(sim: PbxSimulator) -> tuple[str, str, str]:
    answered = sim.play_inbound("+79101234567", start=T0, duration=42, wait=5)
    busy = sim.play_outbound("mike", "+79161112233", answered=False, start=T0 + timedelta(minutes=1))
    missed = sim.play_inbound("+79035554433", answered_by=None, start=T0 + timedelta(minutes=2), wait=7)
    return answered, busy, missed


@case()
def history_rows_read_the_same(wire: Wire) -> None:
    answered, busy, missed = _three_calls(wire.sim)
    with wire.client() as client:
        rows = [r for r in client.history(start=T0, end=T0 + timedelta(hours=1)) if isinstance(r, HistoryRow)]
    assert [(r.uid, r.type, r.client, r.start, r.wait, r.duration) for r in rows] == [
        (answered, "in", "+79101234567", T0, 5, 42),
        (busy, "out", "+79161112233", T0 + timedelta(minutes=1), 0, 0),
        (missed, "missed", "+79035554433", T0 + timedelta(minutes=2), 7, 0),
    ]
    assert rows[0].record
    assert rows[0].record.endswith(f"{answered}.mp3")
    assert rows[0].account.split("@", 1)[0] == "andy"
    assert rows[1].account.split("@", 1)[0] == "mike"
    if wire.api == "v1":
        assert all(isinstance(r, V1HistoryRow) for r in rows)
        assert [r.status for r in rows if isinstance(r, V1HistoryRow)] == ["Success", "Busy", "missed"]
        assert [r.missed_status for r in rows if isinstance(r, V1HistoryRow)] == [None, None, 3]


@case("v1")
def history_falls_back_to_csv_on_501_without_failing(wire: Wire) -> None:
    answered, busy, missed = _three_calls(wire.sim)
    wire.sim.modes.history_json_501 = True
    with wire.client() as client:
        for _ in range(2):
            rows = [r for r in client.history(start=T0, end=T0 + timedelta(hours=1)) if isinstance(r, HistoryRow)]
            assert [(r.uid, r.type, r.start, r.duration) for r in rows] == [
                (answered, "in", T0, 42),
                (busy, "out", T0 + timedelta(minutes=1), 0),
                (missed, "missed", T0 + timedelta(minutes=2), 0),
            ]
            assert all(r.account == "" for r in rows)  # the v1 CSV names no user
    json_asked = [r for r in wire.sim.v1_requests_seen if r["route"] == "/history/json"]
    csv_asked = [r for r in wire.sim.v1_requests_seen if r["route"] == "/history/csv"]
    assert (len(json_asked), len(csv_asked)) == (1, 2)  # the 501 is remembered
    assert csv_asked[0]["query"]["start"] == "20240501T090000Z"


@case("v1")
def a_caller_id_the_pbx_does_not_allow_is_refused_before_dialling(wire: Wire) -> None:
    with wire.client() as client:
        with pytest.raises(PbxInvalidParametersError) as caught:
            client.make_call("+79101234567", "andy", clid="+7 495 123-45-67")
        assert "allowed: 74996861574, 79261234567" in caught.value.message
        assert wire.sim.dials == []
        assert wire.seen("makeCall") == 0
        result = client.make_call("+79101234567", "andy", clid="+7 (499) 686-15-74")
    assert result.clid == "74996861574"
    assert [d.clid for d in wire.sim.dials] == ["74996861574"]


@case()
def caller_ids_are_listed_where_the_api_has_them(wire: Wire) -> None:
    from pbxbridge.pbx.errors import PbxUnsupportedError

    with wire.client() as client:
        if wire.api == "legacy":
            with pytest.raises(PbxUnsupportedError) as caught:
                client.list_caller_ids()
            assert caught.value.code == "invalid_request"
            assert "crmapi/v1" in caught.value.message
            assert wire.sim.requests_seen == []  # nothing asked of a PBX that cannot answer
        else:
            listed = [(c.telnum, c.enabled) for c in client.list_caller_ids()]
            assert listed == [("74996861574", True), ("79261234567", True), ("74951234567", False)]


@pytest.mark.parametrize(
    ("api", "contract"),
    [pytest.param(api, c, id=f"{api}-{c.name}") for c in CASES for api in c.apis],
)
def test_contract(server: SimulatorServer, api: str, contract: Case) -> None:
    contract.run(fresh(server, api))


def test_every_case_runs_on_both_apis_unless_it_is_v1s_own() -> None:
    v1_only = {c.name for c in CASES if c.apis == ("v1",)}
    assert v1_only == {
        "paging_that_never_ends_stops_at_the_cap_and_says_so",
        "dnd_is_inverted_on_the_v1_wire",
        "subscription_on_the_v1_wire",
        "our_crm_token_in_the_keys_place_says_which_secret_goes_where",
        "domain_disabled_says_the_integration_is_off_in_the_cabinet",
        "history_falls_back_to_csv_on_501_without_failing",
        "a_caller_id_the_pbx_does_not_allow_is_refused_before_dialling",
    }
    assert all(c.apis in (("legacy", "v1"), ("v1",)) for c in CASES)


# Which API: PBX_API and auto-detection


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://tenant.megapbx.ru/crmapi/v1", PbxApiKind.V1),
        ("https://tenant.megapbx.ru/crmapi/v1/", PbxApiKind.V1),
        ("https://tenant.megapbx.ru/sys/crm_api.wcgp", PbxApiKind.LEGACY),
        ("https://tenant.megapbx.ru", None),
        ("https://tenant.megapbx.ru/", None),
    ],
)
def test_the_url_names_the_api(url: str, kind: PbxApiKind | None) -> None:
    assert api_from_url(url) == kind


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("https://t.example.ru", "https://t.example.ru/crmapi/v1"),
        ("https://t.example.ru/crmapi/v1/", "https://t.example.ru/crmapi/v1"),
        ("https://t.example.ru/sys/crm_api.wcgp", "https://t.example.ru/crmapi/v1"),
    ],
)
def test_v1_url_accepts_the_tenant_with_or_without_the_suffix(given: str, root: str) -> None:
    assert v1_url(given) == root


def test_a_bare_tenant_serving_v1_is_probed_once_and_kept(
    server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    wire = fresh(server, "v1")
    with caplog.at_level(logging.INFO, logger="pbxbridge.pbx"):
        first = make_client(server.url, KEY, "auto", **FAST)
        second = make_client(server.url, KEY, "auto", **FAST)
    assert isinstance(first, V1PbxClient)
    assert isinstance(second, V1PbxClient)
    probes = [r for r in wire.sim.v1_requests_seen if r["route"] == "/users"]
    assert [(r["method"], r["query"]) for r in probes] == [("GET", {"limit": "1"})]  # a read; once
    assert wire.sim.dials == []
    verdicts = [r for r in caplog.records if r.getMessage() == "the PBX's API detected"]
    assert [r.__dict__["pbx_api"] for r in verdicts] == ["v1"]
    assert all(KEY not in r.getMessage() and KEY not in str(r.__dict__) for r in caplog.records)


def test_a_bare_tenant_without_v1_is_legacy(server: SimulatorServer) -> None:
    wire = fresh(server, "legacy")
    wire.sim.modes.api = "legacy"  # crmapi/v1 answers the web server's 404 page
    client = make_client(server.url, KEY, "auto", **FAST)
    assert isinstance(client, LegacyPbxClient)
    assert [a.name for a in client.accounts()][:1] == ["andy"]


def test_a_probe_the_pbx_cannot_answer_decides_nothing(server: SimulatorServer) -> None:
    wire = fresh(server, "v1")
    wire.sim.fail_next("GET /users", "502", "502")
    with pytest.raises(PbxUnavailableError) as caught:
        detect_api(server.url, KEY, read_timeout=0.5)
    assert caught.value.request_sent is False  # a read: a makeCall waiting on it may be retried
    assert detect_api(server.url, KEY, read_timeout=0.5) is PbxApiKind.V1  # asked again, not a kept guess


def test_a_key_with_the_wrong_key_still_detects_v1(server: SimulatorServer) -> None:
    fresh(server, "v1")
    assert detect_api(server.url, CRM_TOKEN) is PbxApiKind.V1


def test_a_forced_api_is_never_probed(server: SimulatorServer) -> None:
    wire = fresh(server, "legacy")
    assert isinstance(make_client(server.url, KEY, "legacy", **FAST), LegacyPbxClient)
    assert isinstance(make_client(server.url, KEY, "v1", **FAST), V1PbxClient)
    assert wire.sim.v1_requests_seen == []
    assert wire.sim.requests_seen == []


# Units of the v1 readers


@pytest.mark.parametrize(("given", "read"), [("v1", "v1"), ("V1", "v1"), (" Legacy ", "legacy"), ("", "auto")])
def test_the_settings_read_pbx_api(given: str, read: str) -> None:
    from pbxbridge.function_settings import CommandsSettings

    tables = {"CALLS_TABLE": "c", "CALL_EVENTS_TABLE": "e", "CONTACTS_TABLE": "k", "IDEMPOTENCY_TABLE": "i"}
    assert CommandsSettings.model_validate({**tables, "PBX_API": given}).pbx_api == read
    assert CommandsSettings.model_validate(tables).pbx_api == "auto"
    with pytest.raises(ValueError, match="PBX_API"):
        CommandsSettings.model_validate({**tables, "PBX_API": "v2"})


def test_what_looks_like_an_api_key() -> None:
    assert looks_like_api_key(KEY)
    assert looks_like_api_key(KEY.upper())
    assert not looks_like_api_key(CRM_TOKEN)
    assert not looks_like_api_key("local-pbx-token")


def test_v1_history_json_rows_and_rejections() -> None:
    rows = list(
        parse_v1_history_json(
            [
                {"uid": "a", "type": "in", "status": "NotAvailable", "client": "+7910", "start": "20240501T090000Z"},
                {"uid": "b", "type": "OUT", "status": "Success", "start": "2024-05-01T12:00:00+03:00", "duration": "9"},
                {"uid": "c", "type": "in", "start": "2024-05-01 09:00:00"},
                {"uid": "", "type": "in", "start": "2024-05-01T09:00:00Z"},
                {"uid": "e", "type": "in", "start": "yesterday"},
                {"uid": "f", "type": "in", "start": "2024-05-01T09:00:00Z", "wait": -1},
                "not a call",
            ]
        )
    )
    good = [r for r in rows if isinstance(r, V1HistoryRow)]
    assert [(r.uid, r.type, r.start, r.duration, r.account) for r in good] == [
        ("a", "missed", T0, 0, "pbx"),  # an inbound call not ended in Success was missed
        ("b", "out", T0, 9, "pbx"),
        ("c", "in", T0, 0, "pbx"),  # a time without an offset is UTC, as v1's filters are
    ]
    assert [(r.line, r.reason) for r in rows if not isinstance(r, HistoryRow)] == [
        (4, "no uid"),
        (5, "start 'yesterday' is not a time"),
        (6, "wait and duration must be whole seconds"),
        (7, "not an object"),
    ]


def test_v1_history_csv_has_no_account_column() -> None:
    lines = [
        "u1,in,+79101234567,+74996861574,2024-05-01T12:00:00+03:00,5,42,https://t/r.mp3,5",
        "u2,in,+79101234567,+74996861574,2024-05-01T09:00:00Z,5,0,,",
        "u3,out,+79101234567,,2024-05-01T09:00:00Z,0,11,",
        "u4,in,+7910,2024-05-01T09:00:00Z,5",
    ]
    rows = list(parse_v1_history_csv(lines))
    good = [r for r in rows if isinstance(r, HistoryRow)]
    assert [(r.uid, r.type, r.via, r.start, r.duration, r.record, r.rating, r.account) for r in good] == [
        ("u1", "in", "+74996861574", T0, 42, "https://t/r.mp3", "5", ""),
        ("u2", "missed", "+74996861574", T0, 0, None, None, ""),
        ("u3", "out", "", T0, 11, None, None, ""),
    ]
    assert [(r.line, r.reason) for r in rows if not isinstance(r, HistoryRow)] == [(4, "5 columns, 8 or 9 expected")]


def test_errors_never_show_the_key(server: SimulatorServer) -> None:
    wire = fresh(server, "v1")
    wire.sim.fail_next("GET /users", "500", "500", "500", "500")
    with wire.client() as client, pytest.raises(PbxError) as caught:
        client.accounts()
    seen: BaseException | None = caught.value
    while seen is not None:
        assert KEY not in str(seen)
        assert KEY not in repr(seen)
        seen = seen.__cause__ or seen.__context__
