"""What a newcomer reads and types first: the README's links and commands, the docs site's pages, and
`make` alone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = REPO / "docs"
# The README and every page of the docs site: what a reader may copy commands from.
MANUAL = {path.relative_to(REPO).as_posix(): path.read_text(encoding="utf-8") for path in sorted(DOCS.rglob("*.md"))}
MANUAL["README.md"] = README


def test_the_readme_is_a_front_page_not_a_manual() -> None:
    assert len(README.splitlines()) <= 250
    assert "make run" in README
    assert "make test" in README
    # It leads into every page of the manual.
    links = set(re.findall(r"\]\((docs/[^)#\s]+\.md)\)", README))
    pages = {
        f"docs/{name}"
        for name in (
            "getting-started.md",
            "how-it-works.md",
            "widget.md",
            "crm.md",
            "commands.md",
            "deployment.md",
            "operations.md",
            "protocol.md",
            "benchmarks.md",
            "reference/commands.md",
            "reference/events.md",
        )
    }
    assert pages <= links, pages - links


def test_every_relative_link_of_the_readme_is_in_the_repository() -> None:
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert "docs/protocol.md" in local
    for link in local:
        target = (REPO / link).resolve()
        assert target.is_relative_to(REPO), f"{link} points outside the repository"
        assert target.exists(), link


def test_the_aws_cli_lines_work_with_v1_and_write_no_file_into_the_repository() -> None:
    lines = [line for text in MANUAL.values() for line in text.splitlines() if "aws lambda invoke" in line]
    assert any("aws lambda invoke" in line for line in README.splitlines())
    assert len(lines) > 20  # the commands reference has one per command
    for line in lines:
        assert "--cli-binary-format" not in line  # AWS CLI v1 has no such option
        payload = re.search(r"--payload fileb://(\S+)", line)
        assert payload, line  # the file's bytes as they are, in v1 and v2 alike
        assert (REPO / payload[1]).exists(), line
        assert line.rstrip("`, ").endswith("/dev/stdout"), line


def test_make_alone_lists_the_targets() -> None:
    result = subprocess.run(["make", "-s"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for target in ("run", "test", "bench", "sam-build", "ci", "docs", "docs-build", "docs-reference"):
        assert re.search(rf"^  {target}\s+\S", result.stdout, flags=re.MULTILINE), target
    assert "FRESH=1" in result.stdout


def test_the_aws_cli_is_never_installed_into_the_projects_venv() -> None:
    # awscli pins its own botocore: installed into .venv it would replace the one the project runs on.
    installs = [
        line for text in MANUAL.values() for line in text.splitlines() if re.search(r"pip install\s+awscli", line)
    ]
    assert any(re.search(r"pip install\s+awscli", line) for line in README.splitlines())
    for line in installs:
        assert re.search(r"venv (?!\.venv\b)\S+ && (?!\.venv/)\S+/pip install awscli", line), line


def test_the_flow_pictures_show_the_widget_the_call_back_list_and_the_crm_forwarding() -> None:
    whole = MANUAL["docs/how-it-works.md"].split("## The picture", 1)[1].split("```", 2)[1]
    short = README.split("## The picture", 1)[1].split("```", 2)[1]
    for picture in (whole, short):
        for part in (
            "GET /widget",
            "CardFunction",
            "listCallbacks",
            "CallbacksTable",
            "API destination",
            "CrmEndpointUrl",
        ):
            assert part in picture, part


def test_every_port_make_run_reads_is_documented() -> None:
    stack = (REPO / "local" / "stack.py").read_text(encoding="utf-8")
    ports = set(re.findall(r'os\.environ\.get\("([A-Z_]*PORT)"', stack))
    assert {"PORT", "DYNAMODB_PORT", "PBX_PORT", "WIDGET_SOCKET_PORT", "CRM_RECEIVER_PORT"} <= ports
    help_text = subprocess.run(["make", "-s"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    for port in ports:
        assert f"`{port}`" in README, port
        assert f"`{port}`" in MANUAL["docs/getting-started.md"], port
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


def test_make_test_builds_the_docs_strictly() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    test_target = re.search(r"^test:([^#\n]*)", makefile, flags=re.MULTILINE)
    assert test_target
    assert "docs-build" in test_target[1].split()
    build = makefile.split("\ndocs-build:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in build
    serve = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "--dev-addr 127.0.0.1:" in serve  # loopback only


def test_the_docs_site_builds_strictly_and_works_offline(tmp_path: Path) -> None:
    """Every page is in the nav, every link and anchor resolves (--strict with mkdocs.yml's validation),
    and the site loads nothing from another host: no web fonts, no CDN, no analytics; search is the
    theme's own, in the browser."""
    import yaml

    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["font"] is False
    assert config["plugins"] == ["search"]
    assert "analytics" not in config.get("extra", {})
    assert set(config["validation"].values()) == {"warn"}  # warnings fail a --strict build

    def nav_pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [page for item in nav for page in nav_pages(item)]
        if isinstance(nav, dict):
            return [page for value in nav.values() for page in nav_pages(value)]
        return []

    pages = [path.relative_to(DOCS).as_posix() for path in sorted(DOCS.rglob("*.md"))]
    assert sorted(nav_pages(config["nav"])) == pages

    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = Path(sys.executable).with_name("mkdocs")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (site / "search" / "search_index.json").exists()
    loaded = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""", re.IGNORECASE)
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not loaded.search(text), f"{html.name} loads from another host: {loaded.search(text)}"
    for css in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*[\"']?https?:", css.read_text(encoding="utf-8")), css.name
