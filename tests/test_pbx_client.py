"""The PBX client against the PBX simulator, over real HTTP on loopback.

What the client sends (`sim.requests_seen`), what it makes of every answer shape, which failures it
retries (safe commands) and which it must not (`makeCall`), how errors map, and the history CSV.
"""

from __future__ import annotations

import io
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from local.aws import free_port
from local.pbx_simulator import (
    API_PATH,
    HistoryRecord,
    PbxSimulator,
    SimulatorServer,
)
from pbxbridge.pbx import (
    PbxClient,
    PbxError,
    PbxInvalidParametersError,
    PbxInvalidTokenError,
    PbxUnavailableError,
    PbxWrongTenantError,
)
from pbxbridge.pbx.client import api_url, compact_utc, parse_history_csv
from pbxbridge.pbx.models import HistoryPeriod, HistoryRow, HistoryType, RejectedHistoryRow
from pbxbridge.phones import InvalidPhoneError, normalize_phone

TOKEN = "pbx-key-Zq81-never-shown"
MSK = timezone(timedelta(hours=3))
T0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
FAST = {"read_timeout": 0.5, "history_read_timeout": 0.5, "connect_timeout": 0.5, "backoff": 0.01}


@dataclass
class Pbx:
    sim: PbxSimulator
    server: SimulatorServer

    def seen(self, cmd: str) -> list[dict[str, str]]:
        """The forms of `cmd` the PBX received, including those answered with a scripted fault."""
        return [form for form in self.sim.requests_seen if form.get("cmd") == cmd]


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    """One simulator server for the module (stopping one costs a poll interval); see `pbx`."""
    server = PbxSimulator(token=TOKEN).serve()
    assert server.server_address[0] == "127.0.0.1"
    yield server
    server.stop()


@pytest.fixture
def pbx(server: SimulatorServer) -> Pbx:
    """A fresh simulator (users, faults, history, requests seen) behind the module's server."""
    sim = PbxSimulator(token=TOKEN, base_url=server.url)
    server.simulator = sim
    return Pbx(sim, server)


def make_client(pbx: Pbx | str, token: str = TOKEN, **options: Any) -> PbxClient:
    """A client with short timeouts and backoff, for the simulator or for a URL."""
    url = pbx if isinstance(pbx, str) else pbx.server.url
    return PbxClient(url, token, **{**FAST, **options})


@pytest.fixture
def client(pbx: Pbx) -> Iterator[PbxClient]:
    with make_client(pbx) as client:
        yield client


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: bound, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_token_hidden(exc: BaseException, token: str = TOKEN) -> None:
    """Neither the exception nor anything chained to it shows the key."""
    seen: BaseException | None = exc
    while seen is not None:
        assert token not in str(seen)
        assert token not in repr(seen)
        assert all(token not in str(arg) for arg in seen.args)
        if isinstance(seen, PbxError):
            assert token not in seen.message
        seen = seen.__cause__ or seen.__context__


# The URL


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://tenant.example.ru", "https://tenant.example.ru/sys/crm_api.wcgp"),
        ("https://tenant.example.ru/", "https://tenant.example.ru/sys/crm_api.wcgp"),
        (" https://tenant.example.ru/sys/crm_api.wcgp ", "https://tenant.example.ru/sys/crm_api.wcgp"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/sys/crm_api.wcgp"),
    ],
)
def test_api_url_accepts_the_tenant_or_the_full_url(given: str, expected: str) -> None:
    assert api_url(given) == expected
    assert PbxClient(given, TOKEN).url == expected


@pytest.mark.parametrize("given", ["ftp://x", "tenant.example.ru", "https://", ""])
def test_api_url_rejects_what_is_not_http(given: str) -> None:
    with pytest.raises(ValueError, match="http"):
        api_url(given)
    with pytest.raises(ValueError, match="http"):
        PbxClient(given, TOKEN)


def test_compact_utc_converts_to_utc_and_reads_naive_times_as_utc() -> None:
    assert compact_utc(datetime(2024, 5, 1, 2, 30, 5, tzinfo=MSK)) == "20240430T233005Z"
    assert compact_utc(datetime(2024, 5, 1, 2, 30, 5)) == "20240501T023005Z"


# Every command, and what goes on the wire


def test_accounts_reads_ext_as_string_or_number(pbx: Pbx, client: PbxClient) -> None:
    accounts = client.accounts()

    assert [a.name for a in accounts] == ["andy", "daria", "mike", "serg"]
    assert [a.ext for a in accounts] == ["708", "705", "702", "709"]
    assert all(isinstance(a.ext, str) for a in accounts)
    andy, daria = accounts[0], accounts[1]
    assert (andy.real_name, andy.telnum, andy.email) == ("Петров Андрей", "79261234567", "andy@example.ru")
    assert (daria.telnum, daria.email) == (None, "daria@example.ru")
    assert pbx.sim.requests_seen == [{"cmd": "accounts", "token": TOKEN}]


def test_the_simulator_really_sends_ext_both_ways(pbx: Pbx) -> None:
    # Guards the test above: it is only meaningful while the PBX mixes the two forms.
    answer = requests.post(pbx.server.api_url, data={"cmd": "accounts", "token": TOKEN}, timeout=5).json()
    assert [type(a["ext"]) for a in answer] == [str, int, str, int]


def test_groups_all(pbx: Pbx, client: PbxClient) -> None:
    groups = client.groups()

    assert [(g.id, g.real_name, g.ext) for g in groups] == [
        ("sales", "Отдел продаж", "701"),
        ("gr001", "Бухгалтерия", "706"),
    ]
    assert pbx.sim.requests_seen == [{"cmd": "groups", "token": TOKEN}]


@pytest.mark.parametrize(("user", "ids"), [("andy", ["sales"]), ("daria", ["gr001"]), ("705", ["gr001"])])
def test_groups_of_one_user(pbx: Pbx, client: PbxClient, user: str, ids: list[str]) -> None:
    assert [g.id for g in client.groups(user)] == ids
    assert pbx.sim.requests_seen == [{"cmd": "groups", "user": user, "token": TOKEN}]


@pytest.mark.parametrize("shape", ["uuid", "CallID", "text"])
def test_make_call_reads_the_id_in_every_shape(pbx: Pbx, client: PbxClient, shape: str) -> None:
    pbx.sim.make_call_shape = shape

    result = client.make_call("+79101234567", "andy")

    assert result.id_known is True
    assert result.call_id is not None
    assert str(uuid.UUID(result.call_id)) == result.call_id
    assert result.raw == (result.call_id if shape == "text" else {shape: result.call_id})
    assert pbx.sim.requests_seen == [{"cmd": "makeCall", "phone": "79101234567", "user": "andy", "token": TOKEN}]


def test_make_call_without_an_id_in_the_answer(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.make_call_shape = "empty"

    result = client.make_call("+79101234567", "andy")

    assert (result.call_id, result.id_known, result.raw) == (None, False, {"result": "ok"})
    assert len(pbx.seen("makeCall")) == 1


@pytest.mark.parametrize("typed", ["+7 910 123-45-67", "8 (910) 123-45-67", "79101234567", "+79101234567"])
def test_make_call_sends_digits_without_plus(pbx: Pbx, client: PbxClient, typed: str) -> None:
    client.make_call(typed, "708", clid="74996861574")

    (form,) = pbx.seen("makeCall")
    assert form == {"cmd": "makeCall", "phone": "79101234567", "user": "708", "clid": "74996861574", "token": TOKEN}


def test_make_call_takes_a_phone_object(pbx: Pbx, client: PbxClient) -> None:
    client.make_call(normalize_phone("+7 (910) 123 45 67"), "andy")
    assert pbx.seen("makeCall")[0]["phone"] == "79101234567"


def test_make_call_refuses_what_is_no_phone_before_sending(pbx: Pbx, client: PbxClient) -> None:
    with pytest.raises(InvalidPhoneError):
        client.make_call("call me maybe", "andy")
    assert pbx.sim.requests_seen == []


def test_make_call_for_an_unknown_user_carries_the_pbx_message(pbx: Pbx, client: PbxClient) -> None:
    with pytest.raises(PbxInvalidParametersError) as caught:
        client.make_call("+79101234567", "nobody")
    assert caught.value.message == "Invalid parameters: [user]"
    assert caught.value.status == 400
    assert len(pbx.seen("makeCall")) == 1


def test_subscribe_on_calls_sends_group_id_and_reads_plain_ok(pbx: Pbx, client: PbxClient) -> None:
    client.subscribe_on_calls("andy", False, group_id="sales")

    assert pbx.sim.requests_seen == [
        {"cmd": "subscribeOnCalls", "user": "andy", "group_id": "sales", "status": "off", "token": TOKEN}
    ]
    assert pbx.sim.subscriptions == {("andy", "sales"): False}


def test_subscribe_on_calls_without_a_group_covers_every_group_of_the_user(pbx: Pbx, client: PbxClient) -> None:
    client.subscribe_on_calls("andy", True)

    (form,) = pbx.seen("subscribeOnCalls")
    assert form == {"cmd": "subscribeOnCalls", "user": "andy", "status": "on", "token": TOKEN}
    assert "group" not in form
    assert pbx.sim.subscriptions == {("andy", "sales"): True}


def test_subscribe_on_calls_refuses_an_answer_that_is_not_ok(
    pbx: Pbx, client: PbxClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(form: dict[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        return 200, "text/plain", b"FAILED", {}

    monkeypatch.setattr(pbx.sim, "_cmd_subscribeOnCalls", refuse)
    with pytest.raises(PbxUnavailableError, match="FAILED"):
        client.subscribe_on_calls("andy", True, group_id="sales")


def test_subscription_status_follows_subscribe(pbx: Pbx, client: PbxClient) -> None:
    assert client.subscription_status("andy", "sales") is True
    client.subscribe_on_calls("andy", False, group_id="sales")
    assert client.subscription_status("andy", "sales") is False
    client.subscribe_on_calls("andy", True, group_id="sales")
    assert client.subscription_status("andy", "sales") is True

    statuses = pbx.seen("subscriptionStatus")
    assert statuses == [{"cmd": "subscriptionStatus", "user": "andy", "group_id": "sales", "token": TOKEN}] * 3
    assert all("group" not in form for form in pbx.sim.requests_seen)


def test_set_and_get_dnd(pbx: Pbx, client: PbxClient) -> None:
    assert client.get_dnd("mike") is False
    client.set_dnd("mike", True)
    assert client.get_dnd("mike") is True
    assert pbx.sim.dnd == {"mike": True}
    client.set_dnd("702", False)
    assert client.get_dnd("mike") is False

    assert pbx.sim.requests_seen == [
        {"cmd": "get_dnd", "user": "mike", "token": TOKEN},
        {"cmd": "set_dnd", "user": "mike", "state": "true", "token": TOKEN},
        {"cmd": "get_dnd", "user": "mike", "token": TOKEN},
        {"cmd": "set_dnd", "user": "702", "state": "false", "token": TOKEN},
        {"cmd": "get_dnd", "user": "mike", "token": TOKEN},
    ]


def test_every_command_is_spelled_as_the_pbx_expects(pbx: Pbx, client: PbxClient) -> None:
    client.accounts()
    client.groups()
    client.make_call("+79101234567", "andy")
    list(client.history(start=T0))
    client.subscribe_on_calls("andy", True)
    client.subscription_status("andy", "sales")
    client.set_dnd("andy", True)
    client.get_dnd("andy")

    assert [form["cmd"] for form in pbx.sim.requests_seen] == [
        "accounts",
        "groups",
        "makeCall",
        "history",
        "subscribeOnCalls",
        "subscriptionStatus",
        "set_dnd",
        "get_dnd",
    ]
    assert all(form["token"] == TOKEN for form in pbx.sim.requests_seen)


# History


def play_three_calls(sim: PbxSimulator) -> tuple[str, str, str]:
    answered = sim.play_inbound("+79101234567", start=T0, duration=42, wait=5)
    outbound = sim.play_outbound("mike", "+79161112233", start=T0 + timedelta(minutes=1), duration=30)
    missed = sim.play_inbound("+79035554433", answered_by=None, start=T0 + timedelta(minutes=2), wait=7)
    return answered, outbound, missed


def test_history_rows_are_typed(pbx: Pbx, client: PbxClient) -> None:
    answered, outbound, missed = play_three_calls(pbx.sim)

    rows = list(client.history(start=T0, end=T0 + timedelta(hours=1)))

    assert all(isinstance(row, HistoryRow) for row in rows)
    assert [r.model_dump() for r in rows if isinstance(r, HistoryRow)] == [
        {
            "uid": answered,
            "type": "in",
            "client": "+79101234567",
            "account": "andy@tenant.example.ru",
            "via": "+74996861574",
            "start": T0,
            "wait": 5,
            "duration": 42,
            "record": f"{pbx.server.url}/records/{answered}.mp3",
            "rating": None,
            "line": 1,
        },
        {
            "uid": outbound,
            "type": "out",
            "client": "+79161112233",
            "account": "mike@tenant.example.ru",
            "via": "+74996861574",
            "start": T0 + timedelta(minutes=1),
            "wait": 0,
            "duration": 30,
            "record": f"{pbx.server.url}/records/{outbound}.mp3",
            "rating": None,
            "line": 2,
        },
        {
            "uid": missed,
            "type": "missed",
            "client": "+79035554433",
            "account": "g_sales@tenant.example.ru",
            "via": "+74996861574",
            "start": T0 + timedelta(minutes=2),
            "wait": 7,
            "duration": 0,
            "record": None,
            "rating": None,
            "line": 3,
        },
    ]
    assert all(row.start.utcoffset() == timedelta(0) for row in rows if isinstance(row, HistoryRow))


def test_history_reads_start_with_an_offset_and_with_z(pbx: Pbx, client: PbxClient) -> None:
    play_three_calls(pbx.sim)
    form = {"cmd": "history", "start": compact_utc(T0), "end": compact_utc(T0 + timedelta(hours=1)), "token": TOKEN}
    csv_text = requests.post(pbx.server.api_url, data=form, timeout=5).text
    starts = [line.split(",")[5] for line in csv_text.split("\r\n") if line]
    # The PBX writes both forms: `Z` and `+03:00`.
    assert starts == ["2024-05-01T09:00:00Z", "2024-05-01T12:01:00+03:00", "2024-05-01T09:02:00Z"]

    rows = list(client.history(start=T0, end=T0 + timedelta(hours=1)))

    assert [row.start for row in rows if isinstance(row, HistoryRow)] == [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    ]


def test_history_sends_start_and_end_in_utc(pbx: Pbx, client: PbxClient) -> None:
    start = datetime(2024, 5, 1, 2, 30, 0, tzinfo=MSK)  # 2024-04-30 23:30 UTC
    end = datetime(2024, 5, 2, 2, 30, 0, tzinfo=MSK)

    assert list(client.history(start=start, end=end)) == []

    assert pbx.sim.requests_seen == [
        {"cmd": "history", "start": "20240430T233000Z", "end": "20240501T233000Z", "type": "all", "token": TOKEN}
    ]


def test_history_period_wins_over_start_and_end(pbx: Pbx, client: PbxClient) -> None:
    callid = pbx.sim.play_inbound("+79101234567")  # now, so today

    rows = list(client.history(period=HistoryPeriod.TODAY, start=T0, end=T0 + timedelta(days=1)))

    assert [row.uid for row in rows if isinstance(row, HistoryRow)] == [callid]
    assert pbx.sim.requests_seen == [{"cmd": "history", "period": "today", "type": "all", "token": TOKEN}]


def test_history_limit_is_sent_and_honoured(pbx: Pbx, client: PbxClient) -> None:
    answered, outbound, _ = play_three_calls(pbx.sim)

    rows = list(client.history(start=T0, limit=2))

    assert [row.uid for row in rows if isinstance(row, HistoryRow)] == [answered, outbound]
    (form,) = pbx.seen("history")
    assert form["limit"] == "2"
    assert "end" not in form


@pytest.mark.parametrize(("call_type", "index"), [(HistoryType.IN, 0), (HistoryType.OUT, 1), (HistoryType.MISSED, 2)])
def test_history_type_filter(pbx: Pbx, client: PbxClient, call_type: HistoryType, index: int) -> None:
    calls = play_three_calls(pbx.sim)

    rows = list(client.history(start=T0, call_type=call_type))

    assert [(row.uid, row.type) for row in rows if isinstance(row, HistoryRow)] == [(calls[index], call_type.value)]
    assert pbx.seen("history")[0]["type"] == call_type.value


def test_history_keeps_the_rating_column(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.history_records.append(
        HistoryRecord("rated-1", "in", "+79101234567", "andy@x", "+74996861574", T0, 3, 60, "", rating="5")
    )

    (row,) = client.history(start=T0)

    assert isinstance(row, HistoryRow)
    assert (row.uid, row.rating, row.record, row.duration) == ("rated-1", "5", None, 60)


def test_history_reports_a_bad_row_by_line_and_keeps_the_rest(pbx: Pbx, client: PbxClient) -> None:
    answered, outbound, missed = play_three_calls(pbx.sim)
    pbx.sim.history_records.append(
        HistoryRecord("", "in", "+79101234567", "andy@x", "+74996861574", T0 + timedelta(seconds=30), 0, 1, "")
    )

    rows = list(client.history(start=T0))

    assert [(type(r).__name__, r.line) for r in rows] == [
        ("HistoryRow", 1),
        ("RejectedHistoryRow", 2),
        ("HistoryRow", 3),
        ("HistoryRow", 4),
    ]
    assert [r.uid for r in rows if isinstance(r, HistoryRow)] == [answered, outbound, missed]
    assert rows[1] == RejectedHistoryRow(line=2, reason="no UID")


def test_history_without_a_range_carries_the_pbx_message(client: PbxClient) -> None:
    with pytest.raises(PbxInvalidParametersError) as caught:
        list(client.history())
    assert caught.value.message == "Invalid parameters: [start]"


_CHUNK = 64 * 1024  # PbxClient.history reads the stream in chunks of this size


def test_history_line_numbers_survive_a_chunk_boundary(pbx: Pbx, client: PbxClient) -> None:
    records = [
        HistoryRecord(
            f"uid-{i:05d}", "in", "+79101234567", "andy@x", "+74996861574", T0 + timedelta(seconds=i), 1, 2, ""
        )
        for i in range(1200)
    ]
    body = "".join(record.csv_line(i) for i, record in enumerate(records)).encode()
    # Pad the first row so that one CRLF straddles the first chunk boundary exactly.
    records[0].record = "r" * (_CHUNK - 1 - body.rfind(b"\r", 0, _CHUNK))
    records[900].uid = ""  # a bad row after the boundary: its reported line must be right
    body = "".join(record.csv_line(i) for i, record in enumerate(records)).encode()
    assert body[_CHUNK - 1 : _CHUNK + 1] == b"\r\n"
    pbx.sim.history_records.extend(records)

    rows = list(client.history(start=T0))

    assert len(rows) == 1200
    assert rows[900] == RejectedHistoryRow(line=901, reason="no UID")
    assert [row.line for row in rows] == list(range(1, 1201))


# parse_history_csv on its own

CSV = (
    "u1,in,+79101234567,andy@t.ru,+74996861574,2017-07-07T16:14:08+03:00,5,42,https://t.ru/r/u1.mp3\r\n"
    "\r\n"
    "u2,OUT,+79002445949,admin@t.ru,+74996861574,2026-08-25T11:34:40Z,0,11,,4\r\n"
    "u3,in,+79101234567,andy@t.ru,+74996861574,2017-07-07T16:14:08+03:00,5,42\r\n"
    "u4,in,+79101234567,andy@t.ru,+74996861574,yesterday,5,42,\r\n"
    "u5,in,+79101234567,andy@t.ru,+74996861574,2017-07-07T16:14:08Z,5,4.5,\r\n"
    "   \r\n"
    "u6,missed,+79101234567,g_sales@t.ru,+74996861574,2017-07-07T16:14:08,5,0,\r\n"
    ",in,+79101234567,andy@t.ru,+74996861574,2017-07-07T16:14:08Z,5,1,\r\n"
    "u8,missed,+79101234567,ivr,+74996861574,2017-07-07T13:20:00Z,,,\r\n"
)


@pytest.mark.parametrize("source", ["file", "lines"])
def test_parse_history_csv(source: str) -> None:
    given: Any = io.StringIO(CSV, newline="") if source == "file" else CSV.splitlines()

    rows = list(parse_history_csv(given))

    assert rows[0] == HistoryRow(
        uid="u1",
        type="in",
        client="+79101234567",
        account="andy@t.ru",
        via="+74996861574",
        start=datetime(2017, 7, 7, 13, 14, 8, tzinfo=UTC),
        wait=5,
        duration=42,
        record="https://t.ru/r/u1.mp3",
        rating=None,
        line=1,
    )
    assert rows[1] == HistoryRow(
        uid="u2",
        type="out",
        client="+79002445949",
        account="admin@t.ru",
        via="+74996861574",
        start=datetime(2026, 8, 25, 11, 34, 40, tzinfo=UTC),
        wait=0,
        duration=11,
        record=None,
        rating="4",
        line=3,
    )
    rejected = [(r.line, r.reason) for r in rows if isinstance(r, RejectedHistoryRow)]
    assert rejected == [
        (4, "8 columns, 9 or 10 expected"),
        (5, "start 'yesterday' is not ISO 8601"),
        (6, "wait and duration must be whole seconds"),
        (8, "start has no UTC offset"),
        (9, "no UID"),
    ]
    last = rows[-1]
    assert isinstance(last, HistoryRow)
    assert (last.uid, last.line, last.wait, last.duration, last.record) == ("u8", 10, 0, 0, None)
    assert len(rows) == 8


def test_parse_history_csv_of_nothing() -> None:
    assert list(parse_history_csv(io.StringIO("", newline=""))) == []
    assert list(parse_history_csv(["", "\r\n"])) == []


# Retries


def test_a_safe_command_is_retried_after_502s(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("accounts", "502", "502")

    assert [a.name for a in client.accounts()] == ["andy", "daria", "mike", "serg"]

    assert len(pbx.seen("accounts")) == 3
    assert not pbx.sim.faults["accounts"]


@pytest.mark.parametrize("fault", ["500", "502", "503", "301", "garbage", "drop"])
def test_the_simulator_sees_faulted_requests(pbx: Pbx, fault: str) -> None:
    # The retry tests count requests by `requests_seen`: a faulted one must be in it.
    pbx.sim.fail_next("get_dnd", fault)
    form = {"cmd": "get_dnd", "user": "andy", "token": TOKEN}
    try:
        requests.post(pbx.server.api_url, data=form, timeout=5, allow_redirects=False)
    except requests.ConnectionError:
        assert fault == "drop"
    assert pbx.sim.requests_seen == [form]
    assert not pbx.sim.faults["get_dnd"]


def test_a_dropped_connection_on_a_safe_command_is_retried(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("groups", "drop")

    assert [g.id for g in client.groups("andy")] == ["sales"]
    assert len(pbx.seen("groups")) == 2


def test_a_read_timeout_on_a_safe_command_is_retried(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("get_dnd", "hang:1")

    assert client.get_dnd("andy") is False
    assert len(pbx.seen("get_dnd")) == 2


def test_a_read_timeout_on_history_is_retried(pbx: Pbx, client: PbxClient) -> None:
    callid = pbx.sim.play_inbound("+79101234567", start=T0)
    pbx.sim.fail_next("history", "hang:1")

    assert [row.uid for row in client.history(start=T0) if isinstance(row, HistoryRow)] == [callid]
    assert len(pbx.seen("history")) == 2


def test_read_timeouts_until_retries_run_out(pbx: Pbx) -> None:
    pbx.sim.fail_next("accounts", "hang:1", "hang:1")
    with make_client(pbx, retries=1, read_timeout=0.3) as client, pytest.raises(PbxUnavailableError) as caught:
        client.accounts()

    assert caught.value.message == f"the PBX did not answer in time ({client.url})"
    assert caught.value.request_sent is True
    assert len(pbx.seen("accounts")) == 2
    assert_token_hidden(caught.value)


def test_5xx_until_retries_run_out_keeps_the_status(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("accounts", "500", "503", "502", "502")

    with pytest.raises(PbxUnavailableError) as caught:
        client.accounts()

    assert caught.value.status == 502
    assert caught.value.code == "pbx_unavailable"
    assert caught.value.message == f"the PBX answered 502 ({client.url})"  # the HTML page is not the message
    assert len(pbx.seen("accounts")) == 4
    assert_token_hidden(caught.value)


def test_make_call_is_not_resent_after_a_502(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("makeCall", "502", "502")

    with pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")

    assert caught.value.request_sent is True
    assert caught.value.status == 502
    assert len(pbx.seen("makeCall")) == 1
    assert list(pbx.sim.faults["makeCall"]) == ["502"]  # the second scripted 502 was never asked for
    assert_token_hidden(caught.value)


def test_make_call_is_not_resent_after_a_read_timeout(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("makeCall", "hang:1")

    with pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")

    assert caught.value.message == f"the PBX did not answer in time ({client.url})"
    assert caught.value.request_sent is True
    assert len(pbx.seen("makeCall")) == 1
    assert_token_hidden(caught.value)


def test_make_call_is_not_resent_after_a_dropped_connection(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("makeCall", "drop")

    with pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")

    assert caught.value.request_sent is True
    assert len(pbx.seen("makeCall")) == 1


def test_make_call_to_a_closed_port_was_never_sent(closed_port: int) -> None:
    with make_client(f"http://127.0.0.1:{closed_port}") as client:
        with pytest.raises(PbxUnavailableError) as caught:
            client.make_call("+79101234567", "andy")
        assert caught.value.request_sent is False
        assert caught.value.status is None
        assert_token_hidden(caught.value)

        with pytest.raises(PbxUnavailableError) as caught_safe:
            client.accounts()
        assert caught_safe.value.request_sent is False


# Error mapping


def test_wrong_token(pbx: Pbx) -> None:
    wrong = "wrong-key-Yy42-never-shown"
    with make_client(pbx, token=wrong) as client, pytest.raises(PbxInvalidTokenError) as caught:
        client.accounts()

    assert (caught.value.code, caught.value.status, caught.value.message) == ("invalid_token", 401, "Invalid token")
    assert len(pbx.seen("accounts")) == 1  # a 401 is not retried
    assert pbx.sim.requests_seen == [{"cmd": "accounts", "token": wrong}]
    assert_token_hidden(caught.value, wrong)
    assert_token_hidden(caught.value, TOKEN)


def test_misspelled_cmd_carries_the_pbx_message(pbx: Pbx, client: PbxClient) -> None:
    with pytest.raises(PbxInvalidParametersError) as caught:
        client._post("accountz", {})

    assert caught.value.message == "Invalid parameters: [cmd]"
    assert str(caught.value) == "Invalid parameters: [cmd]"
    assert (caught.value.code, caught.value.status) == ("invalid_parameters", 400)
    assert pbx.sim.requests_seen == [{"cmd": "accountz", "token": TOKEN}]
    assert_token_hidden(caught.value)


def test_a_redirect_means_the_wrong_tenant(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("accounts", "301")

    with pytest.raises(PbxWrongTenantError) as caught:
        client.accounts()

    assert (caught.value.code, caught.value.status) == ("wrong_tenant", 301)
    assert "https://other-tenant.example.ru" + API_PATH in caught.value.message
    assert len(pbx.seen("accounts")) == 1  # neither followed nor retried
    assert_token_hidden(caught.value)


def test_a_200_html_page_is_not_an_answer(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("accounts", "garbage")

    with pytest.raises(PbxUnavailableError) as caught:
        client.accounts()

    assert caught.value.status == 200
    assert caught.value.request_sent is True
    assert len(pbx.seen("accounts")) == 1
    assert_token_hidden(caught.value)


def test_make_call_does_not_take_an_html_page_for_a_call(pbx: Pbx, client: PbxClient) -> None:
    pbx.sim.fail_next("makeCall", "garbage")

    with pytest.raises(PbxUnavailableError) as caught:
        client.make_call("+79101234567", "andy")

    assert caught.value.status == 200
    assert caught.value.request_sent is True  # whether it dialled is unknown
    assert len(pbx.seen("makeCall")) == 1
    assert_token_hidden(caught.value)


def test_the_pbx_message_never_shows_our_key(pbx: Pbx, client: PbxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def echo_400(form: dict[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        return 400, "application/json", f'{{"error": "Invalid parameters: [{form["token"]}]"}}'.encode(), {}

    def echo_500(form: dict[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        return 500, "text/plain", f"backend failed for token={form['token']}".encode(), {}

    monkeypatch.setattr(pbx.sim, "_cmd_get_dnd", echo_400)
    with pytest.raises(PbxInvalidParametersError) as caught_400:
        client.get_dnd("andy")
    assert caught_400.value.message == "Invalid parameters: [***]"
    assert_token_hidden(caught_400.value)

    monkeypatch.setattr(pbx.sim, "_cmd_get_dnd", echo_500)
    with pytest.raises(PbxUnavailableError) as caught_500:
        client.get_dnd("andy")
    assert (caught_500.value.message, caught_500.value.status) == (f"backend failed for token=*** ({client.url})", 500)
    assert_token_hidden(caught_500.value)


def test_unavailable_names_the_pbx_but_not_its_credentials() -> None:
    """A wrong PBX_URL is the first thing to rule out, so the error names it; never a user:password in it."""
    port = free_port()
    client = PbxClient(f"http://user:secret@127.0.0.1:{port}", "key", retries=0)
    with client, pytest.raises(PbxUnavailableError) as caught:
        client.accounts()
    assert caught.value.message.endswith(f"(http://127.0.0.1:{port}/sys/crm_api.wcgp)")
    assert "secret" not in str(caught.value)
