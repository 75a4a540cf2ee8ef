"""`pbxbridge pbx ...`: every command from the console, JSON out (CSV for history), and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from local.aws import LOOPBACK, free_port
from local.pbx_simulator import PbxSimulator, SimulatorServer

KEY = "console-pbx-key"


@pytest.fixture(scope="module")
def pbx() -> Iterator[tuple[PbxSimulator, SimulatorServer]]:
    simulator = PbxSimulator(token=KEY, play_make_call=False)
    server = simulator.serve()
    yield simulator, server
    server.stop()


def console(
    server: SimulatorServer, *args: str, token: str = KEY, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PBX_URL": url or server.url, "PBX_TOKEN": token}
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
    down = console(server, "accounts", url=f"http://{LOOPBACK}:{free_port()}")
    assert down.returncode == 3
    assert "pbx_unavailable" in down.stderr
    simulator.fail_next("accounts", "301")
    moved = console(server, "accounts")
    assert moved.returncode == 4
    assert "wrong_tenant" in moved.stderr
    assert console(server, "accounts", url="ftp://nowhere").returncode == 2
