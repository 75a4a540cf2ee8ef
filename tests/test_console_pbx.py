"""`pbxbridge pbx ...`: every command from the console, JSON out (CSV for history), and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from local.aws import LOOPBACK, free_port
from local.pbx_simulator import HistoryRecord, PbxSimulator, SimulatorServer

KEY = "console-pbx-key"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pbx() -> Iterator[tuple[PbxSimulator, SimulatorServer]]:
    simulator = PbxSimulator(token=KEY, play_make_call=False)
    server = simulator.serve()
    yield simulator, server
    server.stop()


def console(
    server: SimulatorServer, *args: str, token: str = KEY, url: str | None = None, api: str = "legacy"
) -> subprocess.CompletedProcess[str]:
    # The simulator serves both APIs on its bare URL: each test says which one it means.
    env = {**os.environ, "PBX_URL": url or server.url, "PBX_TOKEN": token, "PBX_API": api}
    return subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli", "pbx", "--timeout", "2", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_command(pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    simulator, server = pbx
    accounts = console(server, "accounts")
    assert accounts.returncode == 0, accounts.stderr
    assert json.loads(accounts.stdout)[0]["name"] == "andy"
    assert json.loads(console(server, "groups", "--user", "andy").stdout) == [
        {"id": "sales", "real_name": "Отдел продаж", "ext": "701"}
    ]
    call = json.loads(console(server, "makeCall", "--user", "708", "--phone", "+7 910 123-45-67").stdout)
    assert call["id_known"] is True
    assert simulator.requests_seen[-1]["phone"] == "79101234567"
    assert json.loads(
        console(server, "subscribeOnCalls", "--user", "andy", "--group-id", "sales", "--status", "off").stdout
    ) == {"status": "off"}
    assert json.loads(console(server, "subscriptionStatus", "--user", "andy", "--group-id", "sales").stdout) == {
        "status": "off"
    }
    assert json.loads(console(server, "set_dnd", "--user", "mike", "--state", "true").stdout) == {"state": True}
    assert json.loads(console(server, "get_dnd", "--user", "mike").stdout) == {"state": True}


def test_history_is_csv(pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    simulator, server = pbx
    callid = simulator.play_outbound("andy", "79101234567")
    result = console(server, "history", "--start", "2020-01-01T00:00:00Z", "--type", "out")
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == [callid]
    assert rows[0][1:4] == ["out", "+79101234567", "andy@tenant.example.ru"]


@pytest.mark.parametrize(
    ("args", "token", "code", "message"),
    [
        (("get_dnd", "--user", "nobody"), KEY, 2, "invalid_parameters: Invalid parameters: [user]"),
        (("makeCall", "--user", "andy", "--phone", "not a phone"), KEY, 2, "not a phone number"),
        (("history",), KEY, 2, "period"),
        (("accounts",), "wrong-key", 4, "invalid_token"),
    ],
)
def test_exit_codes(
    pbx: tuple[PbxSimulator, SimulatorServer], args: tuple[str, ...], token: str, code: int, message: str
) -> None:
    result = console(pbx[1], *args, token=token)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert KEY not in result.stderr + result.stdout


def test_unavailable_and_wrong_tenant(pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    simulator, server = pbx
    nowhere = f"http://{LOOPBACK}:{free_port()}"
    down = console(server, "accounts", url=nowhere)
    assert down.returncode == 3
    assert "pbx_unavailable" in down.stderr
    assert f"({nowhere}/sys/crm_api.wcgp)" in down.stderr  # which PBX, so a wrong PBX_URL shows
    simulator.fail_next("accounts", "301")
    moved = console(server, "accounts")
    assert moved.returncode == 4
    assert "wrong_tenant" in moved.stderr
    assert console(server, "accounts", url="ftp://nowhere").returncode == 2


def test_options_may_follow_the_command(pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    """`pbxbridge pbx accounts --token X`, as `sync history --token X` takes it; the later one wins."""
    _, server = pbx
    after = console(server, "accounts", "--token", KEY, "--url", server.url, token="wrong-key", url="ftp://nowhere")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)[0]["name"] == "andy"
    refused = console(server, "accounts", "--token", "wrong-key")
    assert refused.returncode == 4
    assert "invalid_token" in refused.stderr


def test_history_into_a_closed_pipe_ends_quietly(pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    """`pbxbridge pbx history ... | head -1`: no BrokenPipeError traceback."""
    simulator, server = pbx
    for index in range(3000):  # more than a pipe's buffer, so the console writes after `head` has gone
        simulator.history_records.append(
            HistoryRecord(f"pipe-{index}", "in", "+79101234567", "andy@x", "+7499", T0, 1, 2, "")
        )
    env = {**os.environ, "PBX_URL": server.url, "PBX_TOKEN": KEY, "PBX_API": "legacy"}
    command = f"{sys.executable} -m pbxbridge.cli pbx history --start 2020-01-01T00:00:00Z --limit 5000 | head -1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.count("\n") == 1
    assert result.stderr == ""
    assert result.returncode == 141  # as `yes | head -1` under pipefail: SIGPIPE's, not an error of ours


def test_the_console_alone_prints_its_help() -> None:
    alone = subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli"], capture_output=True, text=True, timeout=60, check=False
    )
    assert alone.returncode == 0
    assert "contacts" in alone.stdout
    assert "invoke" in alone.stdout
    assert alone.stderr == ""
    group = subprocess.run(
        [sys.executable, "-m", "pbxbridge.cli", "pbx"], capture_output=True, text=True, timeout=60, check=False
    )
    assert group.returncode == 2  # a group without its command is still incomplete, but says what there is
    assert "subscribeOnCalls" in group.stdout


@pytest.mark.parametrize("api", ["v1", "auto"])
def test_the_console_speaks_v1(pbx: tuple[PbxSimulator, SimulatorServer], api: str) -> None:
    """PBX_API=v1 (or auto on the bare URL of a tenant that serves v1): the same commands, the same output."""
    simulator, server = pbx
    simulator.dnd.clear()
    before = len(simulator.v1_requests_seen)
    accounts = console(server, "accounts", api=api)
    assert accounts.returncode == 0, accounts.stderr
    assert json.loads(accounts.stdout)[0]["name"] == "andy"
    assert json.loads(console(server, "set_dnd", "--user", "mike", "--state", "true", api=api).stdout) == {
        "state": True
    }
    assert simulator.dnd["mike"] is True
    assert json.loads(console(server, "get_dnd", "--user", "mike", api=api).stdout) == {"state": True}
    assert len(simulator.v1_requests_seen) > before
    refused = console(server, "accounts", "--token", "wrong-key", api=api)
    assert refused.returncode == 4
    assert "invalid_token" in refused.stderr
    assert "UUID" in refused.stderr  # a key that is not v1's shape: which secret goes where
    assert "wrong-key" not in refused.stderr
    caller_ids = json.loads(console(server, "listCallerIds", api=api).stdout)["caller_ids"]
    assert {"telnum": "74996861574", "enabled": True} in caller_ids


def test_the_console_refuses_an_unknown_api(pbx: tuple[PbxSimulator, SimulatorServer]) -> None:
    bad = console(pbx[1], "accounts", api="v2")
    assert bad.returncode == 2
    assert "choose legacy, v1 or auto" in bad.stderr
