"""The widget's team view in a real headless Chromium, against the local stack as `make run` starts it:
the simulator's pushes go through the webhook, the report and the board through the widget's API and
the card function's WebSocket messages, and the page must show what the `report` command says."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, Request, expect

from local.stack import LocalStack
from local.widget import issue_token
from tests.conftest import wait_for
from tests.widget_pages import (
    SCREENSHOTS,
    TIMEOUT_MS,
    browser,
    commands,
    event,
    history,
    needs_chromium,
    no_sideways_scroll,
    playwright,
    widget_page,
)

__all__ = ["browser", "playwright"]  # the fixtures this module borrows
pytestmark = needs_chromium

# The simulator's tenant: sales (andy, mike, serg) and gr001, accounting (daria). Mike is mapped as the
# supervisor of accounting: he sees himself and daria, never andy or serg.
SUPERVISOR = "mike"
DEPARTMENT = "gr001"
TEAM = {"mike", "daria"}
OUTSIDER = "andy"
DAY = 86_400


def _report(stack: LocalStack, **period: str) -> dict[str, Any]:
    answer = commands(stack).invoke({"cmd": "report", "viewer": SUPERVISOR, **period})
    assert answer["ok"], answer
    result: dict[str, Any] = answer["result"]
    return result


def map_supervisor(stack: LocalStack, role: str | None) -> None:
    """Mike's role as `mapUser` sets it (None: back to the PBX's, here a manager)."""
    from pbxbridge.widget import api, push

    mapped = commands(stack).invoke({"cmd": "mapUser", "login": SUPERVISOR, "role": role, "departments": [DEPARTMENT]})
    assert mapped["ok"], mapped
    # The widget API's and the card function's next containers read the new role (as after their caches).
    api.default_dependencies.cache_clear()
    push.default_dependencies.cache_clear()


@pytest.fixture(scope="module")
def team(stack: LocalStack) -> dict[str, str]:
    """Mike supervises accounting; a week of calls for daria (answered, missed and called back after 4,
    8, 12 and 16 minutes), mike's own (one outbound, one missed he never called back), and andy's,
    outside mike's view. Gives the period the page is asked for: the last seven days."""
    map_supervisor(stack, "supervisor")
    now = time.time()
    for d in range(4):
        phone = f"7903555070{d}"
        day = now - d * DAY
        history(stack, "daria", f"7903555069{d}", f"team-in-{d}", "Success", 60 + 30 * d, at=day - 4 * 3600)
        history(stack, "daria", phone, f"team-missed-{d}", "missed", 0, at=day - 3 * 3600)
        called_back = day - 3 * 3600 + (d + 1) * 4 * 60
        history(stack, "daria", phone, f"team-back-{d}", "Success", 45, direction="out", at=called_back)
    history(stack, "mike", "79035550710", "team-mike-out", "Success", 130, direction="out", at=now - 2 * 3600)
    history(stack, "mike", "79035550711", "team-mike-missed", "missed", 0, at=now - 3600)
    history(stack, OUTSIDER, "79035550720", "team-andy-in", "Success", 300, at=now - 1800)
    history(stack, OUTSIDER, "79035550721", "team-andy-missed", "missed", 0, at=now - 1700)
    to = date.fromisoformat(_report(stack, period="today")["to"])
    period = {"from": (to - timedelta(days=6)).isoformat(), "to": to.isoformat()}

    def settled() -> bool:
        total = _report(stack, **period)["total"]
        return bool(total["inbound"] == 9 and total["outbound"] == 5 and total["callbacks"] == 5)

    assert wait_for(settled, timeout=60), _report(stack, **period)["total"]
    return period


def team_page(stack: LocalStack, browser: Callable[[str], BrowserContext], locale: str) -> Page:
    page = widget_page(stack, browser, SUPERVISOR, locale)
    tab = page.locator("#tab-team")
    expect(tab).to_be_visible(timeout=TIMEOUT_MS)
    tab.click()
    expect(page.locator("#panel-team")).to_be_visible()
    expect(page.locator("#board-people li.person").first).to_be_visible(timeout=TIMEOUT_MS)
    return page


def show_period(page: Page, period: dict[str, str]) -> None:
    page.select_option("#period", "dates")
    page.fill("#period-from", period["from"])
    page.fill("#period-to", period["to"])
    page.locator("#period-dates button[type=submit]").click()
    expect(page.locator("#report")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#report-status")).to_have_text("")


def share_en(value: float | None) -> str:
    return "—" if value is None else f"{round(value * 100, 1):g}%"


def duration(value: int | None) -> str:
    return "—" if value is None else f"{value // 60}:{value % 60:02d}"


def cells(page: Page, row: str) -> dict[str, str]:
    return {
        cell.get_attribute("data-col") or "": cell.inner_text() for cell in page.locator(f"{row} td[data-col]").all()
    }


def test_a_supervisor_sees_their_departments_people_and_figures_and_nobody_elses(
    stack: LocalStack, team: dict[str, str], browser: Callable[[str], BrowserContext]
) -> None:
    page = team_page(stack, browser, "en-US")
    # The board: every person mike sees (himself and daria), andy nowhere.
    expect(page.locator("#board-people li.person")).to_have_count(len(TEAM))
    assert {row.get_attribute("data-login") for row in page.locator("#board-people li.person").all()} == TEAM
    expect(page.locator(f"#board-departments li[data-department={DEPARTMENT}]")).to_be_visible()

    # The figures: the report command's answer for mike as viewer, cell by cell.
    show_period(page, team)
    expected = _report(stack, **team)
    people = page.locator("#people-table tbody tr")
    expect(people).to_have_count(len(expected["managers"]))
    assert {row["login"] for row in expected["managers"]} == TEAM
    assert {row.get_attribute("data-key") for row in people.all()} == TEAM
    for row in expected["managers"]:
        shown = cells(page, f'#people-table tbody tr[data-key="{row["login"]}"]')
        assert shown["inbound"] == str(row["inbound"])
        assert shown["missed"] == str(row["missed"])
        assert shown["missed_share"] == share_en(row["missed_share"])
        assert shown["called_back_within_15min"] == str(row["called_back_within_15min"])
        assert shown["not_called_back"] == str(row["not_called_back"])
        assert shown["time_to_call_back_median"] == duration(row["time_to_call_back_median"])
        assert shown["outbound"] == str(row["outbound"])
        name = page.locator(f'#people-table tbody tr[data-key="{row["login"]}"] th').inner_text()
        assert name == row.get("name", row["login"])
    daria = next(row for row in expected["managers"] if row["login"] == "daria")
    assert (daria["inbound"], daria["missed"], daria["called_back_within_15min"]) == (8, 4, 3)
    assert page.locator("#people-table").inner_text().count(OUTSIDER) == 0
    total = expected["total"]
    tiles = {
        "inbound": str(total["inbound"]),
        "missed": str(total["missed"]),
        "called_back_within_15min": str(total["called_back_within_15min"]),
        "time_to_call_back_median": duration(total["time_to_call_back_median"]),
    }
    for tile, value in tiles.items():
        expect(page.locator(f'#tiles li[data-tile="{tile}"] .tile-value')).to_have_text(value)
    expect(page.locator('#tiles li[data-tile="missed"] .tile-note')).to_contain_text(share_en(total["missed_share"]))
    departments = page.locator("#departments-table tbody tr")
    assert [row.get_attribute("data-key") for row in departments.all()] == [
        row["department"] for row in expected["departments"]
    ]

    # The charts: one bar (or pair) per day of the period, their numbers as a table too.
    days = expected["days"]
    assert len(days) == 7
    missed_chart = page.locator("#chart-missed svg[role=img]")
    expect(missed_chart.locator(":scope > title")).to_have_text("Missed calls per day")
    assert missed_chart.get_attribute("aria-labelledby") == "chart-missed-title chart-missed-desc"
    assert missed_chart.locator("rect.bar-missed").count() == len(days)
    for chart in ("#chart-missed", "#chart-callback"):
        page.locator(f"{chart} details summary").click()  # the numbers, opened as a reader would
    assert page.locator("#chart-missed details tbody td").all_inner_texts() == [str(d["missed"]) for d in days]
    medians = page.locator("#chart-callback details tbody tr td:nth-of-type(1)").all_inner_texts()
    assert medians == [duration(d["time_to_call_back_median"]) for d in days]
    expect(page.locator("#chart-callback svg[role=img] > desc")).to_contain_text("90th percentile")
    for chart in ("#chart-missed", "#chart-callback"):
        page.locator(f"{chart} details summary").click()  # closed again

    # A live call of someone outside mike's view never reaches his board; daria's does.
    event(stack, "INCOMING", OUTSIDER, "79035550730", "team-live-andy")
    event(stack, "INCOMING", "daria", "79035550731", "team-live-daria")
    expect(page.locator('li[data-login="daria"] .board-call[data-callid="team-live-daria"]')).to_be_visible(
        timeout=TIMEOUT_MS
    )
    expect(page.locator('.board-call[data-callid="team-live-andy"]')).to_have_count(0)
    unknown = page.locator('.board-call[data-callid="team-live-daria"] .call-who')
    expect(unknown).to_have_text("8 (903) 555-07-31")  # no contact: the national number
    for who, callid in ((OUTSIDER, "team-live-andy"), ("daria", "team-live-daria")):
        event(stack, "COMPLETED", who, "79035550731", callid)
    expect(page.locator(".board-call")).to_have_count(0, timeout=TIMEOUT_MS)
    page.set_viewport_size({"width": 720, "height": 900})
    page.locator("#figures-panel").scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#figures-panel").screenshot(path=str(SCREENSHOTS / "team-en.png"))
    page.close()


def test_a_manager_has_no_team_tab_and_the_team_routes_refuse_them(
    stack: LocalStack, team: dict[str, str], browser: Callable[[str], BrowserContext]
) -> None:
    asked: list[str] = []
    token = issue_token(commands(stack), OUTSIDER)["token"]
    page = browser("en-US").new_page()
    page.on("request", lambda r: asked.append(r.url))
    page.goto(stack.widget.url_for(token))  # type: ignore[union-attr]
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    expect(page.locator("#callbacks-title")).to_be_visible()
    wait_for(lambda: any("/api/callbacks" in url for url in asked))
    expect(page.locator("#tabs")).to_be_hidden()
    expect(page.locator("#panel-team")).to_be_hidden()
    assert page.locator("[role=tab]:visible").count() == 0
    assert [url for url in asked if "/api/team/" in url] == []  # the page never asked
    headers = {"Authorization": f"Bearer {token}"}
    for path, query in (("/api/team/report", "?period=today"), ("/api/team/board", "")):
        answer = requests.get(f"{stack.api.url}{path}{query}", headers=headers, timeout=20)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["error"]["code"] == "forbidden"
    page.close()


def test_the_board_follows_a_live_call(
    stack: LocalStack, team: dict[str, str], browser: Callable[[str], BrowserContext]
) -> None:
    page = team_page(stack, browser, "ru-RU")
    boards: list[str] = []

    def count(request: Request) -> None:
        if "/api/team/board" in request.url:
            boards.append(request.url)

    page.on("request", count)
    callid = "team-live-1"
    phone = "79035550740"
    contact = {"phone": phone, "contact_name": "ООО Ромашка", "responsible": "daria"}
    assert commands(stack).invoke({"cmd": "upsertContacts", "contacts": [contact]})["ok"]
    daria = page.locator('#board-people li[data-login="daria"]')
    event(stack, "INCOMING", "daria", phone, callid)
    call = daria.locator(f'.board-call[data-callid="{callid}"]')
    expect(call).to_have_attribute("data-state", "ringing", timeout=TIMEOUT_MS)
    expect(call.locator(".call-who")).to_have_text("ООО Ромашка")  # the contact's name
    expect(call.locator(".call-state")).to_have_text("звонит")

    event(stack, "ACCEPTED", "daria", phone, callid)
    expect(call).to_have_attribute("data-state", "answered", timeout=TIMEOUT_MS)
    expect(call.locator(".call-state")).to_have_text("разговор")
    running = call.locator(".board-duration")
    expect(running).to_have_text(re.compile(r"^0:0\d$"), timeout=TIMEOUT_MS)
    first = running.inner_text()
    asked = len(boards)
    # The duration ticks on the page's own clock: it moves with no request to the server.
    expect(running).not_to_have_text(first, timeout=5_000)
    assert len(boards) == asked

    # Daria switches DND in her own widget: the board shows it (board.dnd), without a reload.
    daria_token = issue_token(commands(stack), "daria")["token"]
    switched = requests.put(
        f"{stack.api.url}/api/dnd", json={"state": True}, headers={"Authorization": f"Bearer {daria_token}"}, timeout=20
    )
    assert switched.status_code == 200, switched.text
    expect(daria.locator(".dnd-badge")).to_have_text("Не беспокоить", timeout=TIMEOUT_MS)
    # A call to daria missed 10 minutes ago opens her call-back: the board reads itself again
    # (board.callbacks), and the call-back is due soon (past two thirds of the 15 minutes).
    history(stack, "daria", "79035550741", "team-live-missed", "missed", 0, at=time.time() - 10 * 60)
    due = daria.locator(".sla")
    expect(due).to_have_attribute("data-sla", "due", timeout=TIMEOUT_MS)
    expect(due).to_have_text("скоро срок")
    expect(daria.locator(".callbacks-open")).to_have_text("перезвонить: 1")

    # Mike's own call-back (missed an hour ago, never called back) is past its 15 minutes: overdue,
    # said in a word and a shape, not only a colour.
    overdue = page.locator('#board-people li[data-login="mike"] .sla')
    expect(overdue).to_have_attribute("data-sla", "overdue")
    expect(overdue).to_have_text("просрочен")
    assert overdue.locator(".sla-shape").evaluate("e => getComputedStyle(e).borderRadius") == "0px"  # a square
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#board-panel").screenshot(path=str(SCREENSHOTS / "team-board-ru.png"))

    event(stack, "COMPLETED", "daria", phone, callid)
    expect(call).to_have_count(0, timeout=TIMEOUT_MS)
    expect(daria).to_be_visible()
    switched = requests.put(
        f"{stack.api.url}/api/dnd",
        json={"state": False},
        headers={"Authorization": f"Bearer {daria_token}"},
        timeout=20,
    )
    assert switched.status_code == 200, switched.text
    expect(daria.locator(".dnd-badge")).to_have_count(0, timeout=TIMEOUT_MS)
    page.close()


def test_the_team_view_fits_360_px(
    stack: LocalStack, team: dict[str, str], browser: Callable[[str], BrowserContext]
) -> None:
    page = team_page(stack, browser, "ru-RU")
    assert page.viewport_size == {"width": 360, "height": 740}
    show_period(page, team)
    expect(page.locator("#chart-callback svg")).to_be_visible()
    assert no_sideways_scroll(page), page.evaluate("document.scrollingElement.scrollWidth")
    # The table is wider than the screen: it scrolls inside its own box, the page does not.
    box = page.locator("#people-table").locator("xpath=..")
    assert box.evaluate("e => e.scrollWidth > e.clientWidth")
    for part in ("#tabs", "#board-panel", "#figures-panel", "#tiles", "#chart-missed svg", "#chart-callback svg"):
        bounds = page.locator(part).bounding_box()
        assert bounds is not None, part
        assert 0 <= bounds["x"] <= bounds["x"] + bounds["width"] <= 360, (part, bounds)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "team-360-ru.png"), full_page=True)
    page.close()


def test_the_tabs_and_the_tables_sort_work_from_the_keyboard(
    stack: LocalStack, team: dict[str, str], browser: Callable[[str], BrowserContext]
) -> None:
    page = widget_page(stack, browser, SUPERVISOR, "en-US")
    mine, other = page.locator("#tab-mine"), page.locator("#tab-team")
    expect(other).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("[role=tablist]")).to_have_attribute("aria-label", "Views")

    def focused() -> str:
        return str(page.evaluate("document.activeElement.id"))

    for _ in range(10):  # from the top of the page, the Tab key reaches the selected tab
        page.keyboard.press("Tab")
        if focused() == "tab-mine":
            break
    assert focused() == "tab-mine"
    # A visible focus ring where the keyboard is.
    assert mine.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    assert (mine.get_attribute("tabindex"), other.get_attribute("tabindex")) == ("0", "-1")  # one tab stop
    page.keyboard.press("ArrowRight")
    assert focused() == "tab-team"
    expect(other).to_have_attribute("aria-selected", "true")
    expect(mine).to_have_attribute("aria-selected", "false")
    expect(page.locator("#panel-team")).to_be_visible()
    expect(page.locator("#panel-mine")).to_be_hidden()
    assert page.locator("#panel-team").get_attribute("aria-labelledby") == "tab-team"
    page.keyboard.press("Home")
    assert focused() == "tab-mine"
    expect(page.locator("#panel-mine")).to_be_visible()
    page.keyboard.press("ArrowLeft")  # round from the first to the last
    assert focused() == "tab-team"
    page.keyboard.press("End")
    assert focused() == "tab-team"
    expect(page.locator("#people-table tbody tr").first).to_be_visible(timeout=TIMEOUT_MS)

    # Tab on to the table's "Inbound" header button, and sort with Enter and Space.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.key") == "inbound":
            break
    assert page.evaluate("document.activeElement.closest('table').id") == "people-table"
    header = page.locator("#people-table thead th").nth(1)
    expect(header).not_to_have_attribute("aria-sort", re.compile(".*"))
    expect(page.locator("#people-table thead th").first).to_have_attribute("aria-sort", "ascending")

    def inbound_column() -> list[int]:
        return [int(text) for text in page.locator('#people-table tbody td[data-col="inbound"]').all_inner_texts()]

    page.keyboard.press("Enter")
    expect(header).to_have_attribute("aria-sort", "descending")
    assert inbound_column() == sorted(inbound_column(), reverse=True)
    assert len(set(inbound_column())) > 1
    assert page.evaluate("document.activeElement.dataset.key") == "inbound"  # the focus stays on it
    page.keyboard.press("Space")
    expect(header).to_have_attribute("aria-sort", "ascending")
    assert inbound_column() == sorted(inbound_column())
    assert page.locator("#people-table thead th[aria-sort]").count() == 1
    # The numbers are right-aligned.
    cell = page.locator('#people-table tbody td[data-col="inbound"]').first
    assert cell.evaluate("e => getComputedStyle(e).textAlign") == "right"
    page.close()


def test_a_failed_report_offers_a_retry_and_a_refused_board_hides_the_tab(
    stack: LocalStack, team: dict[str, str], browser: Callable[[str], BrowserContext]
) -> None:
    failed: list[int] = []

    def overloaded(route: Any) -> None:
        if not failed:  # the first answer is a 503, as the API says it under load
            failed.append(503)
            body = '{"ok": false, "error": {"code": "unavailable", "message": "try again"}}'
            route.fulfill(status=503, content_type="application/json", body=body)
        else:
            route.continue_()

    token = issue_token(commands(stack), SUPERVISOR)["token"]
    page = browser("en-US").new_page()
    page.route(re.compile(r".*/api/team/report\?.*"), overloaded)
    page.goto(stack.widget.url_for(token))  # type: ignore[union-attr]
    page.locator("#tab-team").click()
    expect(page.locator("#report-status")).to_have_text(re.compile("Could not load"), timeout=TIMEOUT_MS)
    expect(page.locator("#report")).to_be_hidden()
    page.locator("#report-retry").click()
    expect(page.locator("#report-retry")).to_be_hidden(timeout=TIMEOUT_MS)
    expect(page.locator("#tiles li")).to_have_count(4, timeout=TIMEOUT_MS)
    page.close()

    # The role changed after the page opened (mike is a manager again): the server refuses the team's
    # routes, and the page drops the view.
    page = widget_page(stack, browser, SUPERVISOR, "en-US")
    expect(page.locator("#tab-team")).to_be_visible(timeout=TIMEOUT_MS)
    map_supervisor(stack, None)
    try:
        page.locator("#tab-team").click()
        expect(page.locator("#tabs")).to_be_hidden(timeout=TIMEOUT_MS)
        expect(page.locator("#panel-team")).to_be_hidden()
        expect(page.locator("#panel-mine")).to_be_visible()
    finally:
        map_supervisor(stack, "supervisor")
    page.close()
