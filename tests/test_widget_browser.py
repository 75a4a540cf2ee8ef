"""The widget in a real headless Chromium (Debian's `chromium`, driven by Playwright), against the
local stack as `make run` starts it: the PBX simulator's pushes pop the card through the template's
WebSocket API, and the page's buttons go through the widget's own API to the simulator."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from playwright.sync_api import BrowserContext, Page, expect

from local.stack import DEMO_CONTACT, MISSED_DEMO_PHONE, LocalStack
from local.widget import issue_token
from pbxbridge.widget_tokens import issue_token as sign_token
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
UNKNOWN = "79161112233"

pytestmark = needs_chromium


def card(page: Page, callid: str) -> Any:
    return page.locator(f'.card[data-callid="{callid}"]')


def test_the_card_pops_for_the_rung_user_only_and_follows_the_call(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    andy = widget_page(stack, browser, "andy", "ru-RU")
    mike = widget_page(stack, browser, "mike", "en-US")
    callid = "browser-call-1"

    event(stack, "INCOMING", "andy@tenant.example.ru", UNKNOWN, callid)
    ringing = card(andy, callid)
    expect(ringing).to_have_attribute("data-state", "ringing", timeout=TIMEOUT_MS)
    expect(ringing.locator(".phone")).to_have_text("8 (916) 111-22-33")
    expect(ringing.locator(".badge")).to_have_text("Входящий звонок")  # the browser's language
    expect(andy.locator("#announce")).to_contain_text("8 (916) 111-22-33")  # the ARIA live region

    event(stack, "ACCEPTED", "andy@tenant.example.ru", UNKNOWN, callid)
    expect(ringing).to_have_attribute("data-state", "answered", timeout=TIMEOUT_MS)
    expect(ringing.locator(".state")).to_contain_text("Петров Андрей")

    event(stack, "COMPLETED", "andy@tenant.example.ru", UNKNOWN, callid)
    history(stack, "andy@tenant.example.ru", UNKNOWN, callid, "Success", 75)
    expect(ringing).to_have_attribute("data-state", "ended", timeout=TIMEOUT_MS)
    expect(ringing.locator(".state")).to_contain_text("отвечен")
    expect(ringing.locator(".state")).to_contain_text("1:15")

    # Every post for this call went out in the same passes that reached andy: mike got none.
    assert mike.locator(".card").count() == 0
    expect(mike.locator("#no-cards")).to_be_visible()


def test_the_contacts_responsible_sees_the_card_of_a_call_to_someone_else(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    andy = widget_page(stack, browser, "andy", "ru-RU")
    mike = widget_page(stack, browser, "mike", "en-US")
    serg = widget_page(stack, browser, "serg", "en-US")
    phone = DEMO_CONTACT["phone"].lstrip("+")
    # An earlier call with the demo contact, for the card's history.
    earlier = stack.pbx.simulator.play_inbound(phone, group=None, rings="andy", answered_by="andy", duration=61)
    archived = wait_for(
        lambda: commands(stack).invoke({"cmd": "getCall", "callid": earlier})["result"]["call"].get("recording_key")
    )
    assert archived, "the earlier call's recording was never archived"
    callid = "browser-call-2"
    event(stack, "INCOMING", "mike", phone, callid)
    for page in (mike, andy):  # mike is rung, andy is the contact's responsible
        popped = card(page, callid)
        expect(popped).to_have_attribute("data-state", "ringing", timeout=TIMEOUT_MS)
        expect(popped.locator(".contact-name")).to_have_text(DEMO_CONTACT["contact_name"])
        expect(popped.locator(".responsible")).to_have_text("Петров Андрей")
        expect(popped.locator("tbody tr")).to_have_count(1)
    mike_card = card(mike, callid)
    mike_card.locator("summary").click()
    expect(mike_card.locator("tbody tr td").nth(2)).to_have_text("answered")
    expect(mike_card.locator("tbody tr td").nth(3)).to_have_text("1:01")
    assert serg.locator(".card").count() == 0
    # Usable at 360 px: nothing wider than the screen.
    assert mike.evaluate("document.documentElement.scrollWidth") <= 360
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    mike.screenshot(path=str(SCREENSHOTS / "card-en.png"), full_page=True)
    andy.locator(f'.card[data-callid="{callid}"] summary').click()
    andy.screenshot(path=str(SCREENSHOTS / "card-ru.png"), full_page=True)
    # The earlier call was andy's: its archived recording plays in his widget (a presigned URL)...
    play = card(andy, earlier).locator(".actions .play")
    expect(play).to_be_visible(timeout=TIMEOUT_MS)  # the card was updated when the recording was archived
    play.click()
    audio = andy.locator(f'audio[data-callid="{earlier}"]')
    expect(audio).to_have_attribute("src", re.compile(r"/RecordingsBucket/recordings/.*X-Amz-Signature="))
    # ...but mike, rung by the later call only, may not hear it: the API answers not_found.
    row = mike_card.locator("tbody tr").first
    row.locator(".play").click()
    expect(row.locator(".play")).to_have_text("The recording is not available yet.")
    assert mike.locator("audio").count() == 0


def test_click_to_call_dials_once_on_a_double_click(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    page = widget_page(stack, browser, "mike", "en-US")
    posts: list[dict[str, Any]] = []
    page.on(
        "request", lambda r: posts.append(json.loads(r.post_data or "{}")) if r.url.endswith("/api/calls") else None
    )
    before = [r for r in stack.pbx.simulator.requests_seen if r.get("cmd") == "makeCall"]
    page.fill("#dial-phone", "8 916 111-22-33")
    page.dblclick("#dial-button")
    expect(page.locator("#dial-result")).to_have_attribute("data-state", "ok", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    made = [r for r in stack.pbx.simulator.requests_seen if r.get("cmd") == "makeCall"][len(before) :]
    assert len(posts) == 2, "the double click sent two requests"
    assert posts[0]["requestId"] == posts[1]["requestId"]
    assert [(r["user"], r["phone"]) for r in made] == [("mike", UNKNOWN)]
    # The placed call rings mike's phone first: its card pops in his page (outbound).
    expect(page.locator(".card[data-state] .badge").first).to_have_text("Outgoing call", timeout=TIMEOUT_MS)


def test_the_dnd_switch_round_trips(stack: LocalStack, browser: Callable[[str], BrowserContext]) -> None:
    page = widget_page(stack, browser, "serg", "en-US")
    switch = page.locator("#dnd")
    expect(switch).to_be_enabled(timeout=TIMEOUT_MS)
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.focus()
    page.keyboard.press("Space")  # keyboard-usable
    expect(switch).to_have_attribute("aria-checked", "true", timeout=TIMEOUT_MS)
    assert stack.pbx.simulator.dnd["serg"] is True
    page.reload()  # the state shown is the PBX's
    expect(page.locator("#dnd")).to_have_attribute("aria-checked", "true", timeout=TIMEOUT_MS)
    page.locator("#dnd").click()
    expect(page.locator("#dnd")).to_have_attribute("aria-checked", "false", timeout=TIMEOUT_MS)
    assert stack.pbx.simulator.dnd["serg"] is False


def _connect_status(url: str) -> int:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    async def attempt() -> int:
        try:
            async with connect(url):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    # Playwright's sync API keeps an event loop on this thread: the handshake runs on another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, attempt()).result(timeout=30)


@pytest.mark.parametrize("kind", ["forged", "expired"])
def test_a_forged_or_expired_token_is_refused_at_connect_and_by_the_api(
    stack: LocalStack, browser: Callable[[str], BrowserContext], kind: str
) -> None:
    assert stack.widget is not None
    if kind == "forged":
        token, _ = sign_token("andy", "someone-elses-key-0123456789abcdef-xyz")
    else:
        token, _ = sign_token("andy", stack.widget.key, ttl=60, now=time.time() - 3600)
    assert _connect_status(f"{stack.widget.socket.url}?token={token}") == 403
    assert _connect_status(stack.widget.socket.url) == 401  # no token at all
    answer = requests.get(f"{stack.api.url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 403
    assert requests.get(f"{stack.api.url}/api/me", timeout=10).status_code == 401
    page = browser("en-US").new_page()
    page.goto(stack.widget.url_for(token))
    expect(page.locator("#status")).to_have_attribute("data-state", "expired", timeout=TIMEOUT_MS)
    page.close()


def test_a_missed_call_waits_in_the_owners_list_until_a_call_back_is_answered(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    andy = widget_page(stack, browser, "andy", "ru-RU")
    phone = "79035550011"
    # A known client whose manager is andy calls mike's line, and nobody answers.
    commands(stack).invoke(
        {"cmd": "upsertContacts", "contacts": [{"phone": phone, "contact_name": "ООО Ромашка", "responsible": "andy"}]}
    )
    stack.pbx.simulator.play_inbound(phone, group=None, rings="mike", answered_by=None)
    entry = andy.locator(f'#callbacks li[data-phone="+{phone}"]')
    expect(entry).to_be_visible(timeout=TIMEOUT_MS)  # the socket says "reload" when the list changed
    expect(entry.locator("strong")).to_have_text("ООО Ромашка")
    expect(entry.locator(".callback-phone")).to_have_text("8 (903) 555-00-11")
    expect(andy.locator("#callbacks-count")).to_have_text("(1)")
    assert andy.evaluate("document.documentElement.scrollWidth") <= 360
    andy.screenshot(path=str(SCREENSHOTS / "callbacks-ru.png"), full_page=True)

    # The list's own button calls back; the client answers, and the call-back closes (even within the
    # missed call's second: an answered call counts as after a missed one that shares its second).
    made_before = len([r for r in stack.pbx.simulator.requests_seen if r.get("cmd") == "makeCall"])
    entry.locator("button").click()
    expect(entry).to_have_count(0, timeout=TIMEOUT_MS)
    expect(andy.locator("#no-callbacks")).to_be_visible()
    made = [r for r in stack.pbx.simulator.requests_seen if r.get("cmd") == "makeCall"][made_before:]
    assert [(r["user"], r["phone"]) for r in made] == [("andy", phone)]
    closed = commands(stack).invoke({"cmd": "listCallbacks", "owner": "andy", "status": "closed"})
    assert [c["closed_by"] for c in closed["result"]["callbacks"] if c["phone"] == f"+{phone}"] == ["andy"]


def test_the_newcomers_walk_through_from_the_printed_lines(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    """`make run`'s own lines: open the printed widget URL, ring with the printed curl, miss one."""
    import subprocess

    lines = [line.strip() for line in stack.summary().splitlines()]
    url = next(line for line in lines if "/widget#token=" in line)
    ring, miss = [line for line in lines if line.startswith("curl ") and "/_simulator/inbound" in line]
    page = browser("en-US").new_page()
    page.goto(url)
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    before = page.locator(".card").count()
    callid = json.loads(subprocess.run(ring, shell=True, capture_output=True, text=True, check=True).stdout)["callid"]  # noqa: S602
    popped = card(page, callid)
    expect(popped).to_have_attribute("data-state", "ringing", timeout=TIMEOUT_MS)
    expect(popped.locator(".contact-name")).to_have_text(DEMO_CONTACT["contact_name"])
    expect(popped).to_have_attribute("data-state", "ended", timeout=TIMEOUT_MS)
    assert page.locator(".card").count() == before + 1
    # A number nobody knows, and the call rang andy: his call-back.
    subprocess.run(miss, shell=True, capture_output=True, text=True, check=True)  # noqa: S602
    entry = page.locator(f'#callbacks li[data-phone="+{MISSED_DEMO_PHONE}"]')
    expect(entry).to_be_visible(timeout=TIMEOUT_MS)
    expect(entry.locator(".callback-phone")).to_have_text("8 (903) 555-01-23")
    page.close()


def test_names_without_spaces_never_widen_the_page_at_360_px(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    serg = widget_page(stack, browser, "serg", "ru-RU")
    assert serg.viewport_size == {"width": 360, "height": 740}
    names = {
        "79035550201": "ИП_Константинопольский_А.В._Торгово-производственная_компания",
        "79035550202": "procurement.department.of.a.very.large.company@long-corporate-domain.example.ru",
    }
    commands(stack).invoke(
        {
            "cmd": "upsertContacts",
            "contacts": [{"phone": p, "contact_name": n, "responsible": "serg"} for p, n in names.items()],
        }
    )
    for phone in names:  # the card pops with the name, and the missed call lands in serg's list
        stack.pbx.simulator.play_inbound(phone, group=None, rings="serg", answered_by=None)
    for phone, name in names.items():
        entry = serg.locator(f'#callbacks li[data-phone="+{phone}"]')
        expect(entry.locator("strong")).to_have_text(name, timeout=TIMEOUT_MS)
        expect(serg.locator(".card .contact-name", has_text=name).first).to_be_visible(timeout=TIMEOUT_MS)
    serg.locator(".card summary").first.click()  # the last calls' table too
    assert no_sideways_scroll(serg), serg.evaluate("document.scrollingElement.scrollWidth")
    for phone in names:  # every row, its button included, within the screen
        box = serg.locator(f'#callbacks li[data-phone="+{phone}"] button').bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= 360
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    serg.screenshot(path=str(SCREENSHOTS / "long-names-ru.png"), full_page=True)


def test_a_failed_reload_of_the_call_back_list_is_retried_soon(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    phone = "79035550301"
    commands(stack).invoke(
        {"cmd": "upsertContacts", "contacts": [{"phone": phone, "contact_name": "ООО Ретрай", "responsible": "mike"}]}
    )
    stack.pbx.simulator.play_inbound(phone, group=None, rings="mike", answered_by=None)
    wait_for(
        lambda: any(
            c["phone"] == f"+{phone}"
            for c in commands(stack).invoke({"cmd": "listCallbacks", "owner": "mike"})["result"]["callbacks"]
        )
    )
    answers: list[int] = []

    def overloaded(route: Any) -> None:
        # The API under load answers 503 twice (as the widget API's envelope says `unavailable`).
        if len(answers) < 2:
            answers.append(503)
            body = {"ok": False, "error": {"code": "unavailable", "message": "try again"}}
            route.fulfill(status=503, content_type="application/json", body=json.dumps(body))
        else:
            answers.append(200)
            route.continue_()

    token = issue_token(commands(stack), "mike")["token"]
    page = browser("en-US").new_page()
    page.route(re.compile(r".*/api/callbacks\?status=open$"), overloaded)
    page.goto(stack.widget.url_for(token))  # type: ignore[union-attr]
    # Well before the 60 s poll: the page tried again on its own, backing off, until the list came.
    entry = page.locator(f'#callbacks li[data-phone="+{phone}"]')
    expect(entry).to_be_visible(timeout=TIMEOUT_MS)
    assert answers == [503, 503, 200]
    expect(entry.locator("strong")).to_have_text("ООО Ретрай")
    page.close()


def test_only_http_and_https_crm_links_are_links(stack: LocalStack, browser: Callable[[str], BrowserContext]) -> None:
    assert stack.widget is not None
    sockets: list[Any] = []

    def relay(socket: Any) -> None:
        socket.connect_to_server()  # the real server's messages still come through
        sockets.append(socket)

    token = issue_token(commands(stack), "andy")["token"]
    page = browser("en-US").new_page()
    page.route_web_socket(re.compile(re.escape(stack.widget.socket.url) + r".*"), relay)
    page.goto(stack.widget.url_for(token))
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    links = {
        "js": "javascript:alert(document.domain)",
        "data": "data:text/html,<script>alert(1)</script>",
        "relative": "/widget#token=x",
        "https": "https://crm.example/contacts/1",
        "http": "http://crm.example/contacts/2",
    }
    for kind, url in links.items():
        card_of = {
            "callid": f"link-{kind}",
            "direction": "in",
            "state": "ringing",
            "phone": "+79035550401",
            "phone_national": "8 (903) 555-04-01",
            "contact": {"name": f"Contact {kind}", "crm_url": url},
        }
        sockets[0].send(json.dumps({"type": "card", "card": card_of}))
    for kind in links:
        expect(card(page, f"link-{kind}")).to_be_visible(timeout=TIMEOUT_MS)
    for kind in ("js", "data", "relative"):
        name = card(page, f"link-{kind}").locator(".contact-name")
        expect(name).to_have_text(f"Contact {kind}")
        assert name.evaluate("e => [e.tagName, e.hasAttribute('href')]") == ["SPAN", False]
    for kind in ("https", "http"):
        name = card(page, f"link-{kind}").locator(".contact-name")
        assert name.evaluate("e => [e.tagName, e.getAttribute('href')]") == ["A", links[kind]]
    page.close()


def test_the_card_shows_whether_the_responsible_is_online(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    """The card as the card function builds it on a crmapi/v1 tenant (presence from the last
    directory sync), and on the legacy API (no presence: nothing shown)."""
    from datetime import UTC, datetime, timedelta

    from pbxbridge.domain.card import build_card
    from pbxbridge.domain.contacts import Contact
    from pbxbridge.domain.directory import Directory, PbxUser

    assert stack.widget is not None
    synced = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    users = {
        "v1": Directory(users=(PbxUser("andy", "Петров Андрей", presence="online", presence_at=synced),)),
        "legacy": Directory(users=(PbxUser("andy", "Петров Андрей"),)),
    }
    contact = Contact(phone="+79035550402", contact_name="ООО Ромашка", responsible="andy")
    expected = {"ru-RU": ("в сети", " · 12 мин назад"), "en-US": ("online", " · 12 min ago")}
    for locale, (word, age) in expected.items():
        sockets: list[Any] = []

        def relay(socket: Any, sockets: list[Any] = sockets) -> None:
            socket.connect_to_server()  # the real server's messages still come through
            sockets.append(socket)

        token = issue_token(commands(stack), "andy")["token"]
        page = browser(locale).new_page()
        page.route_web_socket(re.compile(re.escape(stack.widget.socket.url) + r".*"), relay)
        page.goto(stack.widget.url_for(token))
        expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
        for api, directory in users.items():
            call = {"callid": f"presence-{api}", "client": contact.phone, "direction": "in", "rang_at": "t"}
            built = build_card(call, contact, [], directory, "RU", None, now=synced + timedelta(minutes=12, seconds=30))
            sockets[0].send(json.dumps({"type": "card", "card": built}))
        on_v1 = card(page, "presence-v1").locator(".responsible")
        expect(on_v1).to_have_text(f"Петров Андрей {word}{age}", timeout=TIMEOUT_MS)
        expect(on_v1.locator(".presence")).to_have_attribute("data-state", "online")
        on_legacy = card(page, "presence-legacy").locator(".responsible")
        expect(on_legacy).to_have_text("Петров Андрей", timeout=TIMEOUT_MS)
        assert on_legacy.locator(".presence").count() == 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        card(page, "presence-v1").screenshot(path=str(SCREENSHOTS / f"card-presence-{locale[:2]}.png"))
        page.close()


@pytest.mark.parametrize(("locale", "badge"), [("ru-RU", "Просрочен"), ("en-US", "Overdue")])
def test_a_call_back_past_its_sla_shows_a_red_overdue_badge(
    stack: LocalStack, browser: Callable[[str], BrowserContext], locale: str, badge: str
) -> None:
    phone = "79035550401" if locale == "ru-RU" else "79035550402"
    page = widget_page(stack, browser, "serg", locale)
    # A call missed 20 minutes ago (the template's SLA is 15 minutes; no calendar: wall time).
    start = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 20 * 60))
    stack.pbx.simulator.push(
        cmd="history",
        type="in",
        status="missed",
        user="serg",
        phone=phone,
        callid=f"od-{phone}",
        start=start,
        duration="0",
    )
    entry = page.locator(f'#callbacks li[data-phone="+{phone}"]')
    expect(entry).to_be_visible(timeout=TIMEOUT_MS)
    expect(entry.locator(".overdue-badge")).to_have_count(0)
    # The schedule runs it every minute; here, at once (as EventBridge Scheduler would invoke it).
    stack.api.functions["OverdueFunction"].invoke({})
    expect(entry.locator(".overdue-badge")).to_have_text(badge, timeout=TIMEOUT_MS)  # the socket said "reload"
    colour = entry.locator(".overdue-badge").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour == "rgb(209, 36, 47)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.close()


def test_the_supervisor_is_told_when_a_call_back_they_see_runs_out_of_its_sla(
    stack: LocalStack, browser: Callable[[str], BrowserContext]
) -> None:
    from pbxbridge.widget import push

    mapped = commands(stack).invoke(
        {"cmd": "mapUser", "login": "daria", "crm_user": "crm-daria", "role": "supervisor", "departments": ["sales"]}
    )
    assert mapped["ok"], mapped
    push.default_dependencies.cache_clear()  # the card function's next container reads the new role
    daria = widget_page(stack, browser, "daria", "ru-RU")
    mike = widget_page(stack, browser, "mike", "ru-RU")  # a manager: serg's call-backs are not his to see
    phone = "79035550411"
    start = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 20 * 60))
    stack.pbx.simulator.push(
        cmd="history",
        type="in",
        status="missed",
        user="serg",
        phone=phone,
        callid=f"od-{phone}",
        start=start,
        duration="0",
    )
    wait_for(lambda: stack.api.functions["OverdueFunction"].invoke({}).get("escalated"))
    notice = daria.locator(f'#team-overdue li[data-callback="+{phone}/od-{phone}"]')
    expect(notice).to_be_visible(timeout=TIMEOUT_MS)
    expect(notice).to_contain_text("Просрочен")
    expect(notice).to_contain_text(f"serg: обратный звонок на +{phone}")
    assert daria.evaluate("document.documentElement.scrollWidth") <= 360
    expect(mike.locator("#team-overdue li")).to_have_count(0)
    daria.close()
    mike.close()
