"""The widget's server side through its public entry points: tokens, issueWidgetToken, the
authorizer (both APIs' events), the socket handler, the card function on the real change stream
(a gone connection forgotten on the first failed post) and the widget's API (only the user's own)."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests

from local.apigw import http_api_event, http_response
from local.aws import client
from local.lambdas import LocalFunction
from local.pbx_simulator import PbxSimulator, SimulatorServer
from local.template import Template
from local.websocket import LocalWebSocketApi
from local.widget import issue_token as issue_widget_token
from local.widget import store_widget_key
from pbxbridge.domain.card import build_card, card_change
from pbxbridge.domain.contacts import Contact
from pbxbridge.domain.directory import Directory, PbxUser
from pbxbridge.phones import national
from pbxbridge.widget_tokens import (
    InvalidWidgetTokenError,
    bearer,
    issue_token,
    verify_token,
)
from tests.conftest import Webhook, wait_for
from tests.test_call_events import Streams

KEY = "test-widget-key-0123456789abcdef-0123"
PREVIOUS_KEY = "test-previous-widget-key-0123456789ab"
PBX_TOKEN = "test-pbx-key-widget"


# Tokens


def test_a_token_names_its_user_until_it_expires() -> None:
    token, expires = issue_token("andy", KEY, ttl=600)
    assert 595 <= expires - time.time() <= 600
    identity = verify_token(token, [KEY])
    assert (identity.login, identity.expires_at) == ("andy", expires)


def test_forged_expired_foreign_and_unsigned_tokens_are_refused() -> None:
    forged, _ = issue_token("andy", "another-key-0123456789abcdef-0123456")
    expired, _ = issue_token("andy", KEY, ttl=60, now=time.time() - 3600)
    foreign = jwt.encode({"sub": "andy", "aud": "someone-else", "iat": int(time.time()), "exp": 2**31}, KEY)
    unsigned = jwt.encode({"sub": "andy", "aud": "pbxbridge-widget", "iat": 1, "exp": 2**31}, "", algorithm="none")
    no_expiry = jwt.encode({"sub": "andy", "aud": "pbxbridge-widget", "iat": int(time.time())}, KEY)
    for token, reason in (
        (forged, "not valid"),
        (expired, "expired"),
        (foreign, "not valid"),
        (unsigned, "not valid"),
        (no_expiry, "not valid"),
        ("garbage", "not valid"),
        ("", "no token"),
        (None, "no token"),
    ):
        with pytest.raises(InvalidWidgetTokenError, match=reason):
            verify_token(token, [KEY])


def test_only_our_own_well_formed_hs256_tokens_pass() -> None:
    now = int(time.time())
    good = {"sub": "andy", "aud": "pbxbridge-widget", "iss": "pbxbridge", "iat": now, "nbf": now, "exp": now + 600}
    assert verify_token(jwt.encode(good, KEY), [KEY]).login == "andy"  # the baseline the others differ from
    variants = {
        "another issuer": jwt.encode({**good, "iss": "someone-else"}, KEY),
        "no issuer": jwt.encode({k: v for k, v in good.items() if k != "iss"}, KEY),
        "no not-before": jwt.encode({k: v for k, v in good.items() if k != "nbf"}, KEY),
        "not yet valid": jwt.encode({**good, "nbf": now + 60}, KEY),
        "issued in the future": jwt.encode({**good, "iat": now + 60, "nbf": now}, KEY),
        "an audience list": jwt.encode({**good, "aud": ["pbxbridge-widget", "x"]}, KEY),
        "another algorithm": jwt.encode(good, KEY, algorithm="HS512"),
        "a life longer than 24 h": jwt.encode({**good, "exp": now + 25 * 3600}, KEY),
        "no subject": jwt.encode({**good, "sub": ""}, KEY),
    }
    for token in variants.values():  # a failure shows the case in pytest's locals
        with pytest.raises(InvalidWidgetTokenError, match=r"not valid|names no user"):
            verify_token(token, [KEY])
    # Within the leeway, a host whose clock is a little behind still accepts a fresh token.
    assert verify_token(jwt.encode({**good, "nbf": now + 3, "iat": now + 3}, KEY), [KEY]).login == "andy"


def test_a_short_key_checks_nothing() -> None:
    short = "k" * 31
    with pytest.warns(jwt.InsecureKeyLengthWarning):
        token = jwt.encode(
            {"sub": "andy", "aud": "pbxbridge-widget", "iss": "pbxbridge", "iat": 1, "nbf": 1, "exp": 2**31}, short
        )
    with pytest.raises(InvalidWidgetTokenError, match="not valid"):
        verify_token(token, [short])
    with pytest.raises(InvalidWidgetTokenError, match="not valid"):
        verify_token(token, ["", short, KEY])


def test_the_previous_key_is_accepted_during_a_rotation_and_a_short_key_never_signs() -> None:
    old, _ = issue_token("mike", PREVIOUS_KEY)
    assert verify_token(old, [KEY, PREVIOUS_KEY]).login == "mike"
    with pytest.raises(InvalidWidgetTokenError):
        verify_token(old, [KEY])
    with pytest.raises(ValueError, match="32 bytes"):
        issue_token("mike", "short")
    with pytest.raises(ValueError, match="ttl"):
        issue_token("mike", KEY, ttl=10)
    assert bearer("Bearer abc") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None


# The card, decided from a call's old and new image


def test_a_group_call_pops_the_card_for_each_leg_once_then_updates_everyone() -> None:
    # Imported here, not at collection: its logger takes the functions' environment, as in Lambda.
    from pbxbridge.widget.push import CardDependencies, cards_for

    directory = Directory(users=(PbxUser("andy", "Петров Андрей"), PbxUser("mike"), PbxUser("serg")))
    posted: list[tuple[set[str], dict[str, Any]]] = []
    deps = CardDependencies(
        callbacks_table=None,
        region="RU",
        crm_url_template="https://crm.example/contacts/{crm_id}",
        contact=lambda phone: Contact(phone=phone, contact_name="ООО Ромашка", responsible="serg", crm_id="a b/1"),
        last_calls=lambda phone: [{"callid": "now"}, {"callid": "old", "outcome": "answered", "duration": 30}],
        directory=lambda: directory,
        connections=None,  # type: ignore[arg-type]
        post=lambda connection, data: None,
    )
    base = {"callid": "now", "client": "+79035550011", "direction": "in"}
    first = {**base, "rang_at": "2026-01-01T10:00:00Z", "legs_rang": ["andy@t.example.ru"]}
    second = {**first, "legs_rang": ["andy@t.example.ru", "mike@t.example.ru"]}
    answered = {**second, "accepted_at": "2026-01-01T10:00:05Z", "accepted_by": "mike", "pbx_user": "mike"}
    for old, new in ((None, first), (first, second), (second, second), (second, answered), (answered, answered)):
        posted.extend(cards_for(old, new, deps))
    assert [(sorted(who), message["type"]) for who, message in posted] == [
        (["andy", "serg"], "card"),  # the rung user and the contact's responsible
        (["mike"], "card"),  # the second leg only
        (["andy", "mike", "serg"], "card.update"),
    ]
    card = posted[0][1]["card"]
    assert card["phone_national"] == "8 (903) 555-00-11"
    assert card["contact"]["crm_url"] == "https://crm.example/contacts/a%20b%2F1"
    assert card["responsible"] == {"login": "serg", "name": "serg", "presence": None}  # the legacy API gives none
    assert [c["callid"] for c in card["last_calls"]] == ["old"]  # never the ringing call itself
    assert posted[2][1]["card"]["answered_by"] == {"login": "mike", "name": "mike"}


def test_the_card_says_whether_the_responsible_is_online_as_of_the_last_directory_sync() -> None:
    from pbxbridge.widget.push import CardDependencies, cards_for

    synced = datetime(2026, 1, 1, 9, 50, tzinfo=UTC)
    directory = Directory(
        users=(
            PbxUser("andy", "Петров Андрей", presence="Online", presence_at=synced),
            PbxUser("mike", presence="away"),  # a directory that kept no sync time
            PbxUser("serg"),
        )
    )
    responsible = {"phone": "andy"}

    def card_for(phone: str) -> dict[str, Any]:
        deps = CardDependencies(
            callbacks_table=None,
            region="RU",
            crm_url_template=None,
            contact=lambda phone: Contact(phone=phone, contact_name="ООО Ромашка", responsible=responsible["phone"]),
            last_calls=lambda phone: [],
            directory=lambda: directory,
            connections=None,  # type: ignore[arg-type]
            post=lambda connection, data: None,
            clock=lambda: synced + timedelta(minutes=10, seconds=5),
        )
        new = {"callid": phone, "client": phone, "direction": "in", "rang_at": "2026-01-01T10:00:00Z"}
        ((_, message),) = cards_for(None, {**new, "legs_rang": ["serg@t.example.ru"]}, deps)
        return dict(message["card"]["responsible"])

    assert card_for("+79035550011")["presence"] == {
        "state": "online",
        "as_of": "2026-01-01T09:50:00Z",
        "age_seconds": 605,
    }
    responsible["phone"] = "mike"
    assert card_for("+79035550012")["presence"] == {"state": "away", "as_of": None, "age_seconds": None}
    responsible["phone"] = "serg"
    assert card_for("+79035550013") == {"login": "serg", "name": "serg", "presence": None}


def test_the_directory_keeps_presence_with_the_sync_that_saw_it(aws: dict[str, str]) -> None:
    from pbxbridge.storage.directory import DynamoDirectoryStore
    from pbxbridge.storage.dynamodb import dynamodb_client

    store = DynamoDirectoryStore(dynamodb_client(), aws["DirectoryTable"])
    before = datetime.now(tz=UTC)
    store.save_user(PbxUser("andy", presence="online"))
    store.save_user(PbxUser("mike"))  # the legacy API: no presence
    users = {user.login: user for user in store.snapshot("RU").users}
    assert users["andy"].presence == "online"
    assert users["andy"].presence_at is not None
    assert before - timedelta(seconds=1) <= users["andy"].presence_at <= datetime.now(tz=UTC)
    assert (users["mike"].presence, users["mike"].presence_at) == (None, None)


class FakeConnections:
    """ConnectionsTable as the card function uses it, counting its requests."""

    def __init__(self, open_by_login: dict[str, list[str]], fail_removal: bool = False) -> None:
        self.open = open_by_login
        self.queries: list[str] = []
        self.removed: list[str] = []
        self.fail_removal = fail_removal

    def of(self, login: str) -> list[str]:
        self.queries.append(login)
        return list(self.open.get(login, []))

    def disconnected(self, connection_id: str) -> None:
        if self.fail_removal:
            raise RuntimeError("DynamoDB unavailable")
        self.removed.append(connection_id)


def card_deps(connections: FakeConnections, posted: list[str], gone: frozenset[str] = frozenset()) -> Any:
    from pbxbridge.widget.push import CardDependencies, ConnectionGoneError

    def post(connection_id: str, data: bytes) -> None:
        posted.append(connection_id)
        if connection_id in gone:
            raise ConnectionGoneError(connection_id)
        if connection_id.startswith("broken"):
            raise TimeoutError("read timeout")

    directory = Directory(users=(PbxUser("andy"), PbxUser("mike"), PbxUser("serg")))
    return CardDependencies(
        callbacks_table=None,
        region="RU",
        crm_url_template=None,
        contact=lambda phone: None,
        last_calls=lambda phone: [],
        directory=lambda: directory,
        connections=connections,
        post=post,
    )


def test_a_delivery_reads_each_persons_connections_once_and_a_failed_post_spoils_nothing() -> None:
    from pbxbridge.widget.push import deliver

    connections = FakeConnections({"andy": ["a1", "a2", "broken-a3"], "mike": ["m1"], "serg": []})
    posted: list[str] = []
    deps = card_deps(connections, posted, gone=frozenset({"a2"}))
    assert deliver({"andy", "mike", "serg", "nobody"}, {"type": "card"}, deps) == 2  # a1, m1
    # One query per user, never per post; none for a login the directory does not have as active.
    assert sorted(connections.queries) == ["andy", "mike", "serg"]
    assert sorted(posted) == ["a1", "a2", "broken-a3", "m1"]  # every one once: no retry of the batch
    assert connections.removed == ["a2"]  # gone: forgotten on the first failed post; a timeout is not gone
    # Forgetting a gone connection fails (DynamoDB down): the others still got theirs, nothing raises.
    connections, posted = FakeConnections({"andy": ["a1", "a2"]}, fail_removal=True), list[str]()
    assert deliver({"andy"}, {"type": "card"}, card_deps(connections, posted, gone=frozenset({"a1"}))) == 1
    assert (connections.queries, sorted(posted)) == (["andy"], ["a1", "a2"])


def test_a_card_whose_turn_comes_too_late_is_dropped_not_retried() -> None:
    from pbxbridge.widget.push import RESERVE_SECONDS, handle_card_stream

    image = {
        "callid": {"S": "late"},
        "client": {"S": "+79035550011"},
        "rang_at": {"S": "t"},
        "legs_rang": {"L": [{"S": "andy"}]},
    }
    event = {
        "Records": [
            {
                "eventID": str(n),
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "eventSourceARN": "arn:aws:dynamodb:eu-central-1:1:table/calls/stream/x",
                "dynamodb": {"NewImage": image, "SequenceNumber": str(n), "StreamViewType": "NEW_AND_OLD_IMAGES"},
            }
            for n in (1, 2)
        ]
    }

    class Context:
        def __init__(self, left_ms: list[int]) -> None:
            self.left_ms = left_ms

        def get_remaining_time_in_millis(self) -> int:
            return self.left_ms.pop(0)

    connections, posted = FakeConnections({"andy": ["a1"]}), list[str]()
    deps = card_deps(connections, posted)
    plenty, too_little = int(RESERVE_SECONDS * 1000) + 5000, int(RESERVE_SECONDS * 1000) - 1
    answer = handle_card_stream(event, Context([plenty, too_little]), deps)
    assert answer == {"batchItemFailures": []}  # not failed: a retry would pop it seconds late
    assert posted == ["a1"]  # the first record's card only


def test_card_transitions_are_decided_once_whatever_the_order() -> None:
    ended = {"callid": "c", "completed_at": "t", "outcome": "missed", "rang_at": "t"}
    assert card_change(None, ended) is not None
    assert card_change(ended, ended) is None
    change = card_change({"callid": "c", "rang_at": "t", "completed_at": "t"}, ended)
    assert change is not None
    assert change.ended
    assert not change.first_ring
    assert national("+79101234567", "RU") == "8 (910) 123-45-67"
    assert national("+4930123456", "RU") == "+49 30 123456"
    assert national("708", "RU") == "708"
    card = build_card({"callid": "c", "client": "+79101234567"}, None, [], Directory(), "RU", None)
    assert card["contact"] is None
    assert card["state"] == "ringing"


# Through the functions


@pytest.fixture(scope="module")
def pbx() -> Iterator[tuple[PbxSimulator, SimulatorServer]]:
    simulator = PbxSimulator(token=PBX_TOKEN, play_make_call=False)
    server = simulator.serve()
    yield simulator, server
    server.stop()


@pytest.fixture(scope="module")
def functions(moto_url: str, template: Template, pbx: tuple[PbxSimulator, SimulatorServer]) -> dict[str, LocalFunction]:
    template = Template(parameters={**template.parameters, "PbxUrl": pbx[1].api_url}, endpoint=moto_url)
    return {name: LocalFunction(spec) for name, spec in template.functions().items()}


@pytest.fixture
def widget(
    aws: dict[str, str],
    moto_url: str,
    template: Template,
    pbx: tuple[PbxSimulator, SimulatorServer],
    functions: dict[str, LocalFunction],
) -> dict[str, LocalFunction]:
    from tests.conftest import drop_process_caches

    store_widget_key(template, moto_url, KEY)
    client("ssm", moto_url).put_parameter(
        Name=template.parameter("PbxTokenParameterName"), Value=PBX_TOKEN, Type="SecureString", Overwrite=True
    )
    os.environ["PBX_URL"] = pbx[1].api_url
    pbx[0].requests_seen.clear()
    drop_process_caches(keep_clients=True)
    assert functions["CommandsFunction"].invoke({"cmd": "syncDirectory"})["ok"]
    return functions


def token_for(functions: dict[str, LocalFunction], user: str) -> str:
    return str(issue_widget_token(functions["CommandsFunction"], user, ttl=600)["token"])


def test_issue_widget_token_resolves_the_user_to_one_login(widget: dict[str, LocalFunction]) -> None:
    commands = widget["CommandsFunction"]
    for given in ("andy", "andy@tenant.example.ru", "708", "+7 926 123-45-67"):
        answer = commands.invoke({"cmd": "issueWidgetToken", "user": given})
        assert answer["ok"], (given, answer)
        assert answer["result"]["login"] == "andy"
        identity = verify_token(answer["result"]["token"], [KEY])
        assert identity.login == "andy"
        assert 8 * 3600 - 5 <= identity.expires_at - time.time() <= 8 * 3600
    assert commands.invoke({"cmd": "issueWidgetToken", "user": "nobody"})["error"]["code"] == "not_found"
    assert commands.invoke({"cmd": "issueWidgetToken", "user": "g_sales"})["error"]["code"] == "not_found"
    too_long = commands.invoke({"cmd": "issueWidgetToken", "user": "andy", "ttl": 7 * 24 * 3600})
    assert too_long["error"]["code"] == "invalid_request"


def test_the_authorizer_answers_both_apis_and_never_logs_a_token(
    widget: dict[str, LocalFunction], log_output: io.StringIO, capfd: pytest.CaptureFixture[str]
) -> None:
    authorizer = widget["WidgetAuthorizerFunction"]
    good = token_for(widget, "mike")
    forged, _ = issue_token("mike", "someone-elses-key-0123456789abcdef-xyz")

    def http(token: str) -> Any:
        event = http_api_event("GET", "/api/me", "/api/me", None, headers=[("Authorization", f"Bearer {token}")])
        return authorizer.invoke({**event, "type": "REQUEST", "identitySource": [f"Bearer {token}"]})

    def websocket(token: str) -> Any:
        arn = "arn:aws:execute-api:eu-central-1:123456789012:api/live/$connect"
        return authorizer.invoke(
            {"type": "REQUEST", "methodArn": arn, "queryStringParameters": {"token": token}, "headers": {}}
        )

    allowed = http(good)
    assert allowed["isAuthorized"] is True
    assert allowed["context"]["login"] == "mike"
    assert http(forged) == {"isAuthorized": False}
    policy = websocket(good)
    assert policy["principalId"] == "mike"
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["context"]["login"] == "mike"
    assert websocket(forged)["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    text = log_output.getvalue() + capfd.readouterr().out
    assert "widget token refused" in text
    for secret in (good, forged, KEY, good.split(".")[2]):
        assert secret not in text


def test_connections_are_kept_until_disconnect_and_expire_with_the_token(
    widget: dict[str, LocalFunction], aws: dict[str, str]
) -> None:
    socket = widget["WidgetSocketFunction"]
    expires = int(time.time()) + 600

    def route(key: str, **authorizer: Any) -> Any:
        context = {"routeKey": key, "connectionId": "conn-1", "authorizer": authorizer}
        return socket.invoke({"requestContext": context})

    assert route("$connect", login="andy", expires_at=str(expires)) == {"statusCode": 200}
    dynamodb = client("dynamodb", os.environ["AWS_ENDPOINT_URL"])
    item = dynamodb.get_item(TableName=aws["ConnectionsTable"], Key={"connection_id": {"S": "conn-1"}})["Item"]
    assert item["login"] == {"S": "andy"}
    assert int(item["expires_at"]["N"]) == expires  # the token's expiry (under API Gateway's two hours)
    assert route("$default") == {"statusCode": 200}
    assert route("$connect") == {"statusCode": 403}  # never without the authorizer's login
    assert route("$disconnect") == {"statusCode": 200}
    assert "Item" not in dynamodb.get_item(TableName=aws["ConnectionsTable"], Key={"connection_id": {"S": "conn-1"}})


def test_a_connection_whose_token_expired_gets_no_more_cards(aws: dict[str, str], moto_url: str) -> None:
    from pbxbridge.storage.connections import DynamoConnectionStore

    # API Gateway keeps a connection open up to two hours, whatever the token said; DynamoDB's TTL
    # sweeps late. The by_login index (as the template projects it) carries the expiry to leave it out.
    store = DynamoConnectionStore(client("dynamodb", moto_url), aws["ConnectionsTable"])
    now = time.time()
    store.connected("fresh", "andy", int(now) + 600, now=now)
    store.connected("stale", "andy", int(now) + 600, now=now - 7300)  # past API Gateway's two hours
    store.connected("stale-2", "andy", int(now) - 1, now=now - 60)
    assert store.of("andy") == ["fresh"]
    # However many one token opens, a card goes to the newest few: one person cannot hold up the stream.
    names = [f"tab-{(n * 7) % 12:02}" for n in range(12)]  # ids in no particular order
    for n, name in enumerate(names):  # (stored without the cap at $connect, as before it was there)
        store.connected(name, "mike", int(now) + 8 * 3600, now=now - 3600 + n, limit=None)
    assert store.of("mike") == names[:1:-1]  # the ten opened last


@pytest.fixture
def socket_api(widget: dict[str, LocalFunction], template: Template) -> Iterator[LocalWebSocketApi]:
    from pbxbridge.widget import push, settings

    (spec,) = template.websocket_apis().values()
    api = LocalWebSocketApi(spec, widget).start()
    os.environ["WIDGET_SOCKET_ENDPOINT"] = api.management_url
    settings.clear_caches()
    push.default_dependencies.cache_clear()
    yield api
    api.stop()


def test_a_gone_connection_is_forgotten_on_the_first_failed_post(
    widget: dict[str, LocalFunction],
    socket_api: LocalWebSocketApi,
    webhook: Webhook,
    aws: dict[str, str],
    moto_url: str,
) -> None:
    dynamodb = client("dynamodb", moto_url)
    for connection in ("gone-1", "gone-2"):
        item = {"connection_id": {"S": connection}, "login": {"S": "andy"}, "expires_at": {"N": str(2**31)}}
        dynamodb.put_item(TableName=aws["ConnectionsTable"], Item=item)
    streams = Streams(moto_url)
    streams.records(aws["CallsTable"])  # from here on
    webhook.push(cmd="event", type="INCOMING", user="andy", phone="79035550011", callid="gone-call")
    records = streams.records(aws["CallsTable"])
    assert records
    answer = widget["CardFunction"].invoke({"Records": records})
    assert answer == {"batchItemFailures": []}
    # Each connection was posted to once, answered 410 (GoneException), and was removed for it.
    assert requests.get(f"{socket_api.management_url}/@connections/gone-1", timeout=5).status_code == 410
    assert dynamodb.scan(TableName=aws["ConnectionsTable"])["Items"] == []


def api_call(
    functions: dict[str, LocalFunction], token: str, method: str, path: str, route: str, body: Any = None
) -> tuple[int, Any]:
    """A widget API request as API Gateway hands it on after the authorizer said yes."""
    status, _, answer = api_request(
        functions, token, method, path, route, json.dumps(body).encode() if body is not None else None
    )
    return status, answer


def api_request(
    functions: dict[str, LocalFunction],
    token: str,
    method: str,
    path: str,
    route: str,
    raw: bytes | None = None,
    query: str = "",
) -> tuple[int, dict[str, str], Any]:
    authorizer = functions["WidgetAuthorizerFunction"]
    headers = [("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")]
    event = http_api_event(method, path, route, raw, headers, query=query)
    verdict = authorizer.invoke({**event, "type": "REQUEST", "identitySource": [f"Bearer {token}"]})
    assert verdict["isAuthorized"], verdict
    event["requestContext"]["authorizer"] = {"lambda": verdict["context"]}
    if "{callid}" in route:
        event["pathParameters"] = {"callid": path.split("/")[3]}
    status, answer_headers, payload = http_response(functions["WidgetApiFunction"].invoke(event))
    return status, answer_headers, json.loads(payload)


def test_bad_input_to_the_widget_api_is_a_400_never_a_5xx(
    widget: dict[str, LocalFunction], pbx: tuple[PbxSimulator, SimulatorServer]
) -> None:
    andy = token_for(widget, "andy")
    for method, path, route, raw, query in (
        ("POST", "/api/calls", "/api/calls", b"{not json", ""),
        ("POST", "/api/calls", "/api/calls", b'["79035550011"]', ""),
        ("POST", "/api/calls", "/api/calls", b"{}", ""),
        ("POST", "/api/calls", "/api/calls", b'{"phone": 79035550011}', ""),
        ("POST", "/api/calls", "/api/calls", json.dumps({"phone": "89035550011", "requestId": "x" * 65}).encode(), ""),
        ("POST", "/api/calls", "/api/calls", json.dumps({"phone": "89035550011", "requestId": ""}).encode(), ""),
        ("PUT", "/api/dnd", "/api/dnd", b"{}", ""),
        ("PUT", "/api/dnd", "/api/dnd", b'{"state": "sideways"}', ""),
        ("PUT", "/api/dnd", "/api/dnd", None, ""),
        ("GET", "/api/callbacks", "/api/callbacks", None, "status=everything"),
        # Fields the widget never sends are refused, never ignored (the user is always the token's).
        ("POST", "/api/calls", "/api/calls", json.dumps({"phone": "89035550011", "user": "mike"}).encode(), ""),
        ("PUT", "/api/dnd", "/api/dnd", json.dumps({"state": True, "user": "mike"}).encode(), ""),
        ("GET", "/api/callbacks", "/api/callbacks", None, "owner=mike"),
        ("GET", "/api/callbacks", "/api/callbacks", None, "status=open&owner=mike"),
        ("GET", "/api/me", "/api/me", None, "owner=mike"),
        ("GET", "/api/dnd", "/api/dnd", None, "user=mike"),
        ("POST", "/api/calls", "/api/calls", json.dumps({"phone": "89035550011"}).encode(), "user=mike"),
        ("GET", "/api/callbacks", "/api/callbacks", b'{"owner": "mike"}', ""),
    ):
        status, _, answer = api_request(widget, andy, method, path, route, raw, query)
        assert (status, answer["error"]["code"]) == (400, "invalid_request"), (path, raw, query, answer)
    assert not [r for r in pbx[0].requests_seen if r.get("cmd") in ("makeCall", "set_dnd")]
    # The error names the field, and what the route takes.
    query = "status=open&owner=mike"
    _, _, answer = api_request(widget, andy, "GET", "/api/callbacks", "/api/callbacks", None, query)
    assert answer["error"]["message"] == "owner: not a field of this query (it takes: status)"
    body = json.dumps({"phone": "89035550011", "user": "mike"}).encode()
    _, _, answer = api_request(widget, andy, "POST", "/api/calls", "/api/calls", body)
    assert answer["error"]["message"] == "user: not a field of this body (it takes: phone, requestId)"
    # A call id no call has is not_found, even one DynamoDB could not take as a key.
    route = "/api/calls/{callid}/recording"
    for callid in ("x" * 3000, "no-such-call"):
        status, _, answer = api_request(widget, andy, "GET", f"/api/calls/{callid}/recording", route)
        assert (status, answer["error"]["code"]) == (404, "not_found")
    status, _, answer = api_request(widget, andy, "GET", "/api/callbacks", "/api/callbacks", None, "status=closed")
    assert (status, answer["result"]["callbacks"]) == (200, [])


def test_click_to_call_is_limited_per_user_per_minute(
    widget: dict[str, LocalFunction],
    aws: dict[str, str],
    moto_url: str,
    pbx: tuple[PbxSimulator, SimulatorServer],
) -> None:
    from pbxbridge.storage.rate_limits import DynamoRateLimiter

    limiter = DynamoRateLimiter(client("dynamodb", moto_url), aws["IdempotencyTable"])
    start = 1_800_000_000.0
    assert [limiter.take("makeCall#unit", 3, now=start + i) for i in range(3)] == [None, None, None]
    assert limiter.take("makeCall#unit", 3, now=start + 15.5) == 45  # the rest of that minute
    assert limiter.take("makeCall#unit", 3, now=start + 60) is None  # a new minute
    assert limiter.take("makeCall#other", 3, now=start + 16) is None  # every user their own count

    # andy used up this minute's calls (and the next one's, so the test never straddles a boundary).
    dynamodb = client("dynamodb", moto_url)
    window = int(time.time() // 60) * 60
    for minute in (window, window + 60):
        dynamodb.put_item(
            TableName=aws["IdempotencyTable"],
            Item={"id": {"S": f"rate#makeCall#andy#{minute}"}, "hits": {"N": "10"}, "expiration": {"N": "1"}},
        )
    body = json.dumps({"phone": "89035550011", "requestId": "click-9"}).encode()
    status, headers, answer = api_request(widget, token_for(widget, "andy"), "POST", "/api/calls", "/api/calls", body)
    assert (status, answer["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(headers["Retry-After"]) <= 60
    status, _, answer = api_request(widget, token_for(widget, "mike"), "POST", "/api/calls", "/api/calls", body)
    assert status == 200, answer
    assert [r["user"] for r in pbx[0].requests_seen if r.get("cmd") == "makeCall"] == ["mike"]


def test_the_widget_api_gives_only_the_users_own_calls_recordings(
    widget: dict[str, LocalFunction], webhook: Webhook, aws: dict[str, str], moto_url: str
) -> None:
    webhook.push(cmd="event", type="INCOMING", user="andy", phone="79035550011", callid="rec-1")
    webhook.push(cmd="event", type="ACCEPTED", user="andy", phone="79035550011", callid="rec-1")
    s3 = client("s3", moto_url)
    s3.create_bucket(Bucket="RecordingsBucket", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket="RecordingsBucket", Key="recordings/rec-1.mp3", Body=b"ID3")
    client("dynamodb", moto_url).update_item(
        TableName=aws["CallsTable"],
        Key={"callid": {"S": "rec-1"}},
        UpdateExpression="SET recording_key = :k",
        ExpressionAttributeValues={":k": {"S": "recordings/rec-1.mp3"}},
    )
    route = "/api/calls/{callid}/recording"
    status, answer = api_call(widget, token_for(widget, "andy"), "GET", "/api/calls/rec-1/recording", route)
    assert status == 200, answer
    assert requests.get(answer["result"]["url"], timeout=5).content == b"ID3"
    for user, callid in (("mike", "rec-1"), ("andy", "no-such-call")):
        status, answer = api_call(widget, token_for(widget, user), "GET", f"/api/calls/{callid}/recording", route)
        assert (status, answer["error"]["code"]) == (404, "not_found")  # the same answer: nothing leaks


def test_the_widget_api_acts_as_the_tokens_user(
    widget: dict[str, LocalFunction], pbx: tuple[PbxSimulator, SimulatorServer]
) -> None:
    simulator = pbx[0]
    andy, mike = token_for(widget, "andy"), token_for(widget, "mike")
    assert api_call(widget, andy, "GET", "/api/me", "/api/me")[1]["result"]["login"] == "andy"
    # The same requestId from two users is two calls; repeated by one user, one.
    for token in (andy, andy, mike):
        status, answer = api_call(
            widget, token, "POST", "/api/calls", "/api/calls", {"phone": "8 903 555-00-11", "requestId": "click-1"}
        )
        assert status == 200, answer
    made = [(r["user"], r["phone"]) for r in simulator.requests_seen if r.get("cmd") == "makeCall"]
    assert made == [("andy", "79035550011"), ("mike", "79035550011")]
    status, answer = api_call(widget, mike, "PUT", "/api/dnd", "/api/dnd", {"state": True})
    assert (status, answer["result"]["state"]) == (200, True)
    assert simulator.dnd == {"mike": True}
    assert api_call(widget, mike, "GET", "/api/dnd", "/api/dnd")[1]["result"]["state"] is True
    assert api_call(widget, andy, "GET", "/api/dnd", "/api/dnd")[1]["result"]["state"] is False
    status, answer = api_call(widget, andy, "POST", "/api/calls", "/api/calls", {"phone": "not a phone"})
    assert (status, answer["error"]["code"]) == (400, "invalid_request")


def test_the_dialer_and_the_dnd_switch_on_a_v1_tenant(
    widget: dict[str, LocalFunction], pbx: tuple[PbxSimulator, SimulatorServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PbxApi=v1: the widget's click-to-call and DND switch answer as on the old API (DND on is v1's DELETE)."""
    from tests.conftest import drop_process_caches

    simulator = pbx[0]
    monkeypatch.setenv("PBX_URL", pbx[1].v1_url)
    monkeypatch.setenv("PBX_API", "v1")
    drop_process_caches(keep_clients=True)
    simulator.dnd.clear()
    simulator.dials.clear()
    simulator.v1_requests_seen.clear()
    andy, mike = token_for(widget, "andy"), token_for(widget, "mike")
    for _ in range(2):
        status, answer = api_call(
            widget, andy, "POST", "/api/calls", "/api/calls", {"phone": "8 903 555-00-11", "requestId": "v1-click"}
        )
        assert status == 200, answer
    assert [(d.api, d.user, d.phone) for d in simulator.dials] == [("v1", "andy", "79035550011")]
    status, answer = api_call(widget, mike, "PUT", "/api/dnd", "/api/dnd", {"state": True})
    assert (status, answer["result"]["state"]) == (200, True)
    assert simulator.dnd == {"mike": True}
    assert ("DELETE", "/users/mike/dnd") in [(r["method"], r["route"]) for r in simulator.v1_requests_seen]
    assert api_call(widget, mike, "GET", "/api/dnd", "/api/dnd")[1]["result"]["state"] is True
    assert api_call(widget, andy, "GET", "/api/dnd", "/api/dnd")[1]["result"]["state"] is False
    assert not [r for r in simulator.requests_seen if r.get("cmd") in ("makeCall", "set_dnd", "get_dnd")]
    monkeypatch.undo()
    drop_process_caches(keep_clients=True)


def test_a_token_of_a_user_gone_from_the_pbx_is_refused_by_the_api(
    widget: dict[str, LocalFunction], pbx: tuple[PbxSimulator, SimulatorServer]
) -> None:
    from tests.conftest import drop_process_caches

    simulator = pbx[0]
    mike = token_for(widget, "mike")
    assert api_call(widget, mike, "GET", "/api/me", "/api/me")[0] == 200
    kept = list(simulator.users)
    simulator.users[:] = [user for user in kept if user.name != "mike"]
    try:
        assert widget["CommandsFunction"].invoke({"cmd": "syncDirectory"})["ok"]
        drop_process_caches(keep_clients=True)  # the directory cached minutes, as in a warm container
        status, _, answer = api_request(widget, mike, "GET", "/api/dnd", "/api/dnd")
        assert (status, answer) == (403, {"message": "Forbidden"})
        assert api_call(widget, token_for(widget, "andy"), "GET", "/api/me", "/api/me")[0] == 200
    finally:
        simulator.users[:] = kept
    assert not [r for r in simulator.requests_seen if r.get("cmd") == "get_dnd"]


def test_an_expired_token_cached_by_the_authorizer_is_refused_by_the_api(widget: dict[str, LocalFunction]) -> None:
    event = http_api_event("GET", "/api/me", "/api/me", None)
    event["requestContext"]["authorizer"] = {"lambda": {"login": "andy", "expires_at": int(time.time()) - 1}}
    status, _, body = http_response(widget["WidgetApiFunction"].invoke(event))
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})


def test_the_page_has_a_strict_content_security_policy(widget: dict[str, LocalFunction]) -> None:
    page = widget["WidgetPageFunction"]
    status, headers, body = http_response(page.invoke(http_api_event("GET", "/widget", "/widget", None)))
    assert status == 200
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert '<script src="/widget/widget.js"' in body.decode()
    assert "<script>" not in body.decode()
    assert " style=" not in body.decode()
    asset = http_api_event("GET", "/widget/widget.js", "/widget/{asset}", None)
    assert http_response(page.invoke({**asset, "pathParameters": {"asset": "widget.js"}}))[0] == 200
    escape = {**asset, "pathParameters": {"asset": "../app.py"}}
    assert http_response(page.invoke(escape))[0] == 404


def test_the_call_back_lists_names_come_in_one_batch_read_per_hundred(aws: dict[str, str], moto_url: str) -> None:
    from pbxbridge.storage.contacts import DynamoContactStore

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner, self.calls = inner, list[str]()

        def __getattr__(self, name: str) -> Any:
            self.calls.append(name)
            return getattr(self.inner, name)

    dynamodb = client("dynamodb", moto_url)
    store = DynamoContactStore(dynamodb, aws["ContactsTable"])
    store.put_contacts([Contact(phone=f"+7903555{n:04}", contact_name=f"Client {n}") for n in range(0, 150, 3)])
    unreadable = {"phone": {"S": "+79035550001"}, "lead": {"S": "[not a bool]"}}
    dynamodb.put_item(TableName=aws["ContactsTable"], Item=unreadable)
    counting = Counting(dynamodb)
    found = DynamoContactStore(counting, aws["ContactsTable"]).get_contacts(f"+7903555{n:04}" for n in range(150))
    assert counting.calls == ["batch_get_item", "batch_get_item"]  # 150 numbers: two reads, never one each
    assert sorted(found) == [f"+7903555{n:04}" for n in range(0, 150, 3)]  # the unreadable row as unknown
    assert found["+79035550003"].contact_name == "Client 3"


def test_only_origins_may_frame_the_widget(template: Template) -> None:
    import re

    from pydantic import ValidationError

    from pbxbridge.widget.settings import FRAME_ANCESTORS_PATTERN, PageSettings

    allowed = template.body["Parameters"]["WidgetFrameAncestors"]["AllowedPattern"]
    assert allowed == FRAME_ANCESTORS_PATTERN  # CloudFormation refuses at deploy what the page would
    for good in ("'self'", "https://crm.example", "'self' https://crm.example:8443 https://*.crm.example"):
        assert re.fullmatch(allowed, good), good
        assert PageSettings(WIDGET_SOCKET_URL="wss://x", WIDGET_FRAME_ANCESTORS=good).frame_ancestors == good
    for bad in ("*", "https:", "http://crm.example", "https://crm.example; script-src *", "'self',https://a", "  "):
        assert not re.fullmatch(allowed, bad), bad
        with pytest.raises(ValidationError):
            PageSettings(WIDGET_SOCKET_URL="wss://x", WIDGET_FRAME_ANCESTORS=bad)


def test_the_sample_events_run_through_their_functions(widget: dict[str, LocalFunction], aws: dict[str, str]) -> None:
    from pathlib import Path

    events = Path(__file__).resolve().parent.parent / "events"
    connect = json.loads((events / "widget-socket-connect.json").read_text())
    assert widget["WidgetSocketFunction"].invoke(connect) == {"statusCode": 200}
    rows = client("dynamodb", os.environ["AWS_ENDPOINT_URL"]).scan(TableName=aws["ConnectionsTable"])["Items"]
    assert [(r["connection_id"]["S"], r["login"]["S"]) for r in rows if "login" in r] == [("Zx9sample0connA=", "andy")]
    assert [r["holder"]["S"] for r in rows if "holder" in r] == ["Zx9sample0connA="]  # its slot
    sample = json.loads((events / "widget-authorizer-websocket.json").read_text())
    assert widget["WidgetAuthorizerFunction"].invoke(sample)["policyDocument"]["Statement"][0]["Effect"] == "Deny"


# The WebSocket: inactive users and the cap on connections, through the local WebSocket server


def _connect(url: str, count: int = 1) -> tuple[list[int], list[Any]]:
    """`count` connects at once: each one's handshake status, and the connections that opened."""
    from concurrent.futures import ThreadPoolExecutor

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    def one(_: int) -> tuple[int, Any]:
        try:
            return 101, connect(url, open_timeout=30)
        except InvalidStatus as exc:
            return exc.response.status_code, None

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(one, range(count)))
    return [status for status, _ in results], [connection for _, connection in results if connection]


def _status(url: str) -> int:
    """One connect: its handshake status (a connection that opens is closed again at once)."""
    statuses, opened = _connect(url)
    _close(opened)
    return statuses[0]


def _close(connections: list[Any]) -> None:
    for connection in connections:
        connection.close()


def _slots(aws: dict[str, str], moto_url: str) -> list[str]:
    rows = client("dynamodb", moto_url).scan(TableName=aws["ConnectionsTable"])["Items"]
    return sorted(r["holder"]["S"] for r in rows if "holder" in r)


def test_a_deactivated_user_is_refused_at_connect_and_gets_no_more_cards(
    widget: dict[str, LocalFunction],
    socket_api: LocalWebSocketApi,
    pbx: tuple[PbxSimulator, SimulatorServer],
    webhook: Webhook,
    aws: dict[str, str],
    moto_url: str,
) -> None:
    from dataclasses import replace

    from pbxbridge.widget.push import default_dependencies, handle_card_stream
    from tests.conftest import drop_process_caches

    simulator = pbx[0]
    mike = token_for(widget, "mike")
    statuses, opened = _connect(f"{socket_api.url}?token={mike}")
    assert statuses == [101]
    mikes = set(socket_api.connections)
    streams = Streams(moto_url)
    streams.records(aws["CallsTable"])  # from here on
    kept = list(simulator.users)
    simulator.users[:] = [user for user in kept if user.name != "mike"]
    try:
        assert widget["CommandsFunction"].invoke({"cmd": "syncDirectory"})["ok"]
        drop_process_caches(keep_clients=True)  # the directory cached minutes, as in a warm container
        os.environ["WIDGET_SOCKET_ENDPOINT"] = socket_api.management_url
        # Connected before the deactivation: the card that rings mike is not posted to him.
        posted: list[str] = []
        real_post = default_dependencies().post

        def counting_post(connection_id: str, data: bytes) -> None:
            posted.append(connection_id)
            real_post(connection_id, data)

        webhook.push(cmd="event", type="INCOMING", user="mike", phone="79035550011", callid="inactive-call")
        records = streams.records(aws["CallsTable"])
        assert records
        deps = replace(default_dependencies(), post=counting_post)
        assert handle_card_stream({"Records": records}, None, deps) == {"batchItemFailures": []}
        assert mikes
        assert not mikes & set(posted)
        # And a new connection is refused, with the same token that opened the first.
        assert _status(f"{socket_api.url}?token={mike}") == 403
        assert _status(f"{socket_api.url}?token={token_for(widget, 'andy')}") == 101
    finally:
        simulator.users[:] = kept
        _close(opened)


def test_one_user_holds_at_most_ten_connections_and_a_closed_one_frees_its_place(
    widget: dict[str, LocalFunction], socket_api: LocalWebSocketApi, aws: dict[str, str], moto_url: str
) -> None:
    from pbxbridge.storage.connections import MAX_CONNECTIONS_PER_LOGIN

    url = f"{socket_api.url}?token={token_for(widget, 'serg')}"
    statuses, opened = _connect(url, MAX_CONNECTIONS_PER_LOGIN)
    try:
        assert statuses == [101] * MAX_CONNECTIONS_PER_LOGIN
        assert _status(url) == 429  # the eleventh
        assert _status(f"{socket_api.url}?token={token_for(widget, 'andy')}") == 101  # others are not held up
        _close(opened[:1])  # a tab closed: $disconnect frees its place
        assert wait_for(lambda: len(_slots(aws, moto_url)) == MAX_CONNECTIONS_PER_LOGIN - 1)
        statuses, again = _connect(url)
        assert statuses == [101]
        opened[:1] = again
        assert _status(url) == 429
    finally:
        _close(opened)
    assert wait_for(lambda: _slots(aws, moto_url) == [])  # every place given back


def test_a_connection_that_went_away_unnoticed_frees_its_place_on_the_first_failed_post(
    widget: dict[str, LocalFunction],
    socket_api: LocalWebSocketApi,
    webhook: Webhook,
    aws: dict[str, str],
    moto_url: str,
) -> None:
    from pbxbridge.storage.connections import MAX_CONNECTIONS_PER_LOGIN

    url = f"{socket_api.url}?token={token_for(widget, 'andy')}"
    statuses, opened = _connect(url, MAX_CONNECTIONS_PER_LOGIN)
    assert statuses == [101] * MAX_CONNECTIONS_PER_LOGIN
    try:
        # API Gateway lost them without a $disconnect (its management API now answers 410 for each).
        socket_api.connections.clear()
        assert _status(url) == 429
        streams = Streams(moto_url)
        streams.records(aws["CallsTable"])  # from here on
        webhook.push(cmd="event", type="INCOMING", user="andy", phone="79035550011", callid="stale-call")
        assert widget["CardFunction"].invoke({"Records": streams.records(aws["CallsTable"])}) == {
            "batchItemFailures": []
        }
        assert _slots(aws, moto_url) == []  # every gone connection gave its place back
        statuses, fresh = _connect(url)
        assert statuses == [101]
        opened.extend(fresh)
    finally:
        _close(opened)


def test_the_cap_holds_under_concurrent_connects(aws: dict[str, str], moto_url: str) -> None:
    """Many $connects of one user at the same moment (one store per thread, as Lambda runs them side
    by side): exactly ten win, each in a slot of its own; the rest are refused."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pbxbridge.storage.connections import MAX_CONNECTIONS_PER_LOGIN, DynamoConnectionStore

    attempts = 24
    start = threading.Barrier(attempts)
    expires = int(time.time()) + 600

    def connect(n: int) -> bool:
        store = DynamoConnectionStore(client("dynamodb", moto_url), aws["ConnectionsTable"])
        start.wait()
        return store.connected(f"race-{n:02}", "race", expires)

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        won = list(pool.map(connect, range(attempts)))
    assert won.count(True) == MAX_CONNECTIONS_PER_LOGIN
    store = DynamoConnectionStore(client("dynamodb", moto_url), aws["ConnectionsTable"])
    winners = sorted(f"race-{n:02}" for n, ok in enumerate(won) if ok)
    assert _slots(aws, moto_url) == winners  # one slot each, no slot shared
    assert sorted(store.of("race")) == winners
    # A connection whose life is over leaves a slot anyone may take, even without its $disconnect.
    assert store.connected("late", "race", expires) is False
    store.connected("old", "old-tabs", expires, now=time.time() - 3 * 3600)  # (its two hours are over)
    for n in range(MAX_CONNECTIONS_PER_LOGIN - 1):
        assert store.connected(f"tab-{n}", "old-tabs", expires)
    assert store.connected("new", "old-tabs", expires)
    store.disconnected(winners[0])
    store.disconnected(winners[0])  # twice (a 410 and then its $disconnect): freed once
    assert store.connected("late", "race", expires) is True
    assert store.connected("later", "race", expires) is False
