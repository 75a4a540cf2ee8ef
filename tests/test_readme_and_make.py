"""What a newcomer reads and types first: the README's links and commands, and `make` alone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_relative_link_of_the_readme_is_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert "docs/protocol.md" in local
    for link in local:
        target = (REPO / link).resolve()
        assert target.is_relative_to(REPO), f"{link} points outside the repository"
        assert target.exists(), link


def test_the_aws_cli_lines_work_with_v1_and_write_no_file_into_the_repository() -> None:
    lines = [line for line in README.splitlines() if "aws lambda invoke" in line]
    assert lines
    for line in lines:
        assert "--cli-binary-format" not in line  # AWS CLI v1 has no such option
        payload = re.search(r"--payload fileb://(\S+)", line)
        assert payload, line  # the file's bytes as they are, in v1 and v2 alike
        assert (REPO / payload[1]).exists(), line
        assert line.rstrip("`, ").endswith("/dev/stdout"), line


def test_make_alone_lists_the_targets() -> None:
    result = subprocess.run(["make", "-s"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for target in ("run", "test", "bench", "sam-build", "ci"):
        assert re.search(rf"^  {target}\s+\S", result.stdout, flags=re.MULTILINE), target
    assert "FRESH=1" in result.stdout


def test_the_aws_cli_is_never_installed_into_the_projects_venv() -> None:
    # awscli pins its own botocore: installed into .venv it would replace the one the project runs on.
    installs = [line for line in README.splitlines() if re.search(r"pip install\s+awscli", line)]
    assert installs
    for line in installs:
        assert re.search(r"venv (?!\.venv\b)\S+ && (?!\.venv/)\S+/pip install awscli", line), line


def test_the_flow_picture_shows_the_widget_the_call_back_list_and_the_crm_forwarding() -> None:
    section = README.split("## How it works", 1)[1]
    picture = section.split("```", 2)[1]
    for part in ("GET /widget", "CardFunction", "listCallbacks", "CallbacksTable", "API destination", "CrmEndpointUrl"):
        assert part in picture, part


def test_every_port_make_run_reads_is_documented() -> None:
    stack = (REPO / "local" / "stack.py").read_text(encoding="utf-8")
    ports = set(re.findall(r'os\.environ\.get\("([A-Z_]*PORT)"', stack))
    assert {"PORT", "DYNAMODB_PORT", "PBX_PORT", "WIDGET_SOCKET_PORT", "CRM_RECEIVER_PORT"} <= ports
    help_text = subprocess.run(["make", "-s"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    for port in ports:
        assert f"`{port}`" in README, port
        assert re.search(rf"\b{port}\b", help_text), port


def test_the_simulator_alone_says_how_to_play_calls() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local.pbx_simulator", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "/_simulator/calls" in result.stdout
    assert "/_simulator/inbound" in result.stdout
