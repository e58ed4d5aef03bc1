"""The console in a real browser: Debian's Chromium, driven by Playwright, against a real server on loopback over
a demo world. An agent works a case from apology to remedy and asks a manager for more than they may grant; the
manager approves; a customer answers their feedback page; the agent replies from the inbox. Every page passes
axe-core's checks with no serious or critical violation, and is photographed at 1280 and 390 pixels wide into
AMENDS_SCREENSHOTS_DIR (default: build/screenshots).

Chromium is Debian's (`apt-get install chromium`; .ci/run installs it): Playwright never downloads a browser here.
Without it the tests are skipped, or fail when AMENDS_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from amends.access import Scope
from amends.demo import build_demo, demo_settings
from amends.store import Database, tables, upgrade
from amends.web import create_app
from tests.conftest import SECRET, new_key, service_missing

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("AMENDS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(
    os.environ.get("AMENDS_SCREENSHOTS_DIR", Path(__file__).resolve().parents[1] / "build" / "screenshots")
)
WIDTHS = (1280, 390)
# The flags of a browser on a machine with no network beyond loopback (no background calls home).
_CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


@dataclass
class Site:
    base: str
    password: str
    key: str
    db: Database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server on loopback over a small demo world (300 customers a business, four weeks)."""
    folder = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{folder / 'amends.db'}"
    db = Database(url)
    upgrade(db)
    port = _free_port()
    from amends.config import Settings

    settings = demo_settings(
        Settings(database_url=url, secret_key=SECRET, port=port, detect_sweep_in_serve=False),  # type: ignore[arg-type]
        outbox_file=str(folder / "outbox.jsonl"),
    )
    now = datetime.now(UTC)
    report = build_demo(db, settings, now=now, customers=300, days=28, seed=7)
    _fresh_delays(db, settings, now)
    key = new_key(db, "browser-test", [Scope.FEEDBACK_REQUESTS_WRITE, Scope.FEEDBACK_READ])
    app = create_app(settings, db)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield Site(f"http://127.0.0.1:{port}", report.password, key, db)
    server.should_exit = True
    thread.join(timeout=10)
    db.dispose()


def _fresh_delays(db: Database, settings: Any, now: datetime) -> None:
    """Eight passengers whose flights landed hours late an hour ago: new cases at the airport, so the agent has
    cases untouched by the demo's staff, whatever the hour the world was built at."""
    from amends.detect.service import Detection
    from amends.events import Item, ingest_items
    from amends.recover.service import Recovery

    landed = (now - timedelta(hours=1)).isoformat()
    events: list[dict[str, Any]] = []
    for n in range(8):
        customer = f"P-9{n:05d}"
        events.append({
            "specversion": "1.0", "id": f"browser-profile-{n}", "source": "https://crm.example",
            "type": "customer.profile", "time": (now - timedelta(days=30)).isoformat(), "subject": customer,
            "data": {"name": f"Passenger {n}", "email": f"passenger{n}@example.com", "language": "en"},
        })  # fmt: skip
        events.append({
            "specversion": "1.0", "id": f"browser-arrival-{n}", "source": "https://airline.example.com/operations",
            "type": "flight.arrived", "time": landed, "subject": customer,
            "data": {"flight_no": f"EX9{n}", "booking_ref": f"BRW{n}", "delay_minutes": 400},
        })  # fmt: skip
    # On the wall clock: the demo's detection follows event time, and when the world was quiet in the hour before
    # `now` these arrivals would be the latest events and wait for a later one to pass them.
    detection = Detection.from_settings(db, settings.model_copy(update={"detect_clock": "wall"}))
    ingest_items(db, [Item(e) for e in events], received_at=now, watcher=detection.detector)
    detection.tick()
    with db.engine.connect() as connection:
        fresh = connection.execute(
            sa.select(sa.func.count()).select_from(tables.incidents).where(tables.incidents.c.customer_id.like("P-9%"))
        ).scalar_one()
    assert fresh == 8, f"the eight late arrivals opened {fresh} incidents"
    # Taken in with the holdout off: the demo holds a quarter out, and these are the cases the agent must have.
    Recovery.from_settings(db, settings.model_copy(update={"holdout_share": 0.0})).tick(now=now)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        service_missing("Chromium", f"no browser at {CHROMIUM} (apt-get install chromium, or set AMENDS_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=_CHROMIUM_ARGS)
        yield launched
        launched.close()


def log_in(browser: Any, site: Site, who: str, width: int = 1280) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=site.base)
    page = context.new_page()
    page.goto("/console/login")
    page.get_by_label("Staff id or email").fill(who)
    page.get_by_label("Password", exact=True).fill(site.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console$"))
    return page


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)


def accessible(page: Any) -> None:
    """axe-core (the copy axe-playwright-python ships) finds no serious or critical violation."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not bad, [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in bad]


def test_an_agent_works_a_case_a_manager_approves_a_customer_answers_and_the_agent_replies(
    browser: Any, site: Site
) -> None:
    agent = log_in(browser, site, "ana")
    # Their own queue, the most urgent first: the agent opens the top case that still waits for its apology.
    agent.get_by_label("Show").select_option("mine")
    agent.get_by_role("button", name="Filter").click()
    agent.wait_for_url(re.compile(r".*view=mine.*"))
    rows = agent.locator("table.queue tbody tr")
    case_link = re.compile(r"^#\d+$")
    queue = [rows.nth(i).get_by_role("link", name=case_link).get_attribute("href") for i in range(rows.count())]
    for href in queue:
        agent.goto(href)
        if agent.get_by_label("Message", exact=True).count():
            break
    else:
        pytest.fail("the demo left the agent no case waiting for its apology")
    first_case = agent.url
    if agent.get_by_role("button", name="Take ownership").count():
        agent.get_by_role("button", name="Take ownership").click()
        agent.get_by_text("You own this case now.").wait_for()
    message = agent.get_by_label("Message", exact=True)
    message.fill(message.input_value().rstrip() + "\n\nI have also arranged a voucher for you. Ana")
    agent.get_by_role("button", name="Send the apology").click()
    agent.get_by_text("The apology is on its way.").wait_for()

    # Within the agent's limit: straight to the ledger.
    agent.get_by_label("Kind").select_option("voucher")
    agent.get_by_label("Amount").fill("20")
    agent.get_by_role("button", name="Grant", exact=True).click()
    agent.get_by_text("The remedy is granted").wait_for()

    # Above it, on the next of their cases with nothing granted yet: refused with the limit, then asked of a manager.
    agent.goto("/console?view=mine")
    rows = agent.locator("table.queue tbody tr")
    links = [
        rows.nth(i).get_by_role("link", name=re.compile(r"^#\d+$")).get_attribute("href") for i in range(rows.count())
    ]
    second = None
    for href in links:
        if first_case.endswith(href):
            continue
        agent.goto(href)
        untouched = not agent.get_by_role("heading", name=re.compile("^(Granted|Approvals)$")).count()
        if untouched and agent.get_by_label("Amount").count():  # nothing granted or asked for yet
            second = href
            break
    assert second is not None, "the demo gave the agent no second case to work"
    if agent.get_by_role("button", name="Take ownership").count():
        agent.get_by_role("button", name="Take ownership").click()
    agent.get_by_label("Kind").select_option("voucher")
    agent.get_by_label("Amount").fill("150")
    agent.get_by_role("button", name="Grant", exact=True).click()
    agent.get_by_text("is above your authority").wait_for()
    assert agent.get_by_label("Amount").input_value() == "150"  # what was typed is kept
    agent.get_by_role("button", name="Ask a manager to approve").click()
    agent.get_by_text("A manager has been asked to approve the remedy.").wait_for()
    case_number = second.rsplit("/", 1)[1]

    manager = log_in(browser, site, "max")
    manager.goto("/console/approvals")
    request = manager.locator("section", has=manager.get_by_role("link", name=f"case #{case_number}"))
    request.get_by_label(re.compile("Reason")).fill("A serious delay; agreed.")
    request.get_by_role("button", name="Approve").click()
    manager.get_by_text("Approved: the remedy is in the ledger").wait_for()
    manager.goto(second)
    assert manager.get_by_text("150 EUR voucher by max").count() == 1

    # A customer answers the feedback page their link opens (no login; it works without an account).
    with site.db.unit_of_work() as uow:
        import sqlalchemy as sa

        from amends.store import tables

        r = tables.feedback_requests
        waiting = sa.select(r.c.id).where(r.c.answered_at.is_(None), r.c.expires_at > datetime.now(UTC))
        request_id = uow.execute(waiting.order_by(r.c.id.desc())).scalars().first()
    assert request_id is not None
    link = httpx.get(
        f"{site.base}/v1/feedback-requests/{request_id}", headers={"Authorization": f"Bearer {site.key}"}
    ).json()["url"]
    customer = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
    customer.goto(link)
    accessible(customer)
    shoot(customer, "feedback-page")
    complaint = "The replacement part you fitted squeaks already, and nobody called me back about it."
    customer.locator("textarea[name='disliked']").fill(complaint)  # in the customer's language, whichever it is
    customer.get_by_role("button").last.click()
    customer.locator("dd.said", has_text=complaint).wait_for()  # the answer as stored, shown back

    # The agent answers it from the inbox.
    agent.goto("/console/feedback?view=all")  # the newest first
    item = agent.locator("section.feedback", has=agent.get_by_text(complaint))
    item.get_by_text("Reply", exact=True).click()
    item.get_by_label("Your answer").fill("We are sorry. Our workshop will call you today to book you in free.")
    item.get_by_label("How").select_option("phone")
    item.get_by_role("button", name="Send the answer").click()
    agent.get_by_text("Your answer is on its way (or recorded).").wait_for()
    answered = agent.locator("section.feedback", has=agent.get_by_text(complaint))
    assert answered.get_by_text("Answered by ana").count() == 1


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_passes_axe_and_is_photographed(browser: Any, site: Site, width: int) -> None:
    page = log_in(browser, site, "max", width)
    first_case = page.locator("a[href^='/console/cases/']").first.get_attribute("href")
    customer = page.locator("a[href^='/console/customers/']").first.get_attribute("href")
    for name, path in (
        ("queue", "/console"), ("case", first_case), ("customer", customer), ("feedback", "/console/feedback"),
        ("suggestions", "/console/feedback/suggestions"), ("approvals", "/console/approvals"),
        ("ledger", "/console/ledger"), ("rules", "/console/rules"), ("dashboard", "/console/dashboard"),
        ("account", "/console/account"), ("second-factor", "/console/account/second-factor"),
    ):  # fmt: skip
        page.goto(path)
        if name == "dashboard":
            page.locator(".chart[data-drawn='true']").first.wait_for()  # plotly drew the charts
            assert page.locator(".chart[data-drawn='true']").count() == 7
        accessible(page)
        shoot(page, name)
    # The report of the dashboard's span, opened from its link: one page with its charts drawn, and no script.
    page.goto("/console/dashboard")
    page.get_by_role("link", name="open it").click()
    page.wait_for_url(re.compile(r".*/console/report\?.*format=html"))
    page.get_by_role("heading", name="What recovery does", exact=False).first.wait_for()
    assert page.locator("figure svg").count() >= 3
    accessible(page)
    shoot(page, "report")
    page.context.clear_cookies()
    page.goto("/console/login")
    accessible(page)
    shoot(page, "login")


def test_a_person_shows_what_they_typed_sees_its_strength_changes_their_password_and_ends_another_session(
    browser: Any, site: Site
) -> None:
    elsewhere = log_in(browser, site, "cara")
    page = log_in(browser, site, "cara")
    page.get_by_role("link", name="Account").click()
    page.wait_for_url(re.compile(r".*/console/account$"))
    current = page.get_by_label("Current password")
    current.fill(site.password)
    assert current.get_attribute("type") == "password"
    page.get_by_role("button", name="Show current password").click()
    assert current.get_attribute("type") == "text"  # shown on request (ASVS 2.1.12)
    page.get_by_role("button", name="Hide current password").click()
    assert current.get_attribute("type") == "password"
    new = page.get_by_label("New password", exact=True)
    new.fill("password1234")
    page.locator("#strength[data-score='1']").wait_for()
    assert "not enough" in page.locator("#strength").inner_text()
    new.fill("lantern orchard quietly 42 sails")
    page.locator("#strength[data-score='4']").wait_for()
    assert page.locator("#strength").inner_text().startswith("Strength: very strong")
    accessible(page)
    shoot(page, "account-typing")
    page.get_by_label("New password again").fill("lantern orchard quietly 42 sails")
    page.get_by_role("button", name="Change password").click()
    page.get_by_text("Your password is changed").wait_for()
    elsewhere.reload()
    assert "/console/login" in elsewhere.url  # the other session ended with the change
    # Another browser again, ended from the list of sessions.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.base)
    other = context.new_page()
    other.goto("/console/login")
    other.get_by_label("Staff id or email").fill("cara")
    other.get_by_label("Password", exact=True).fill("lantern orchard quietly 42 sails")
    other.get_by_role("button", name="Log in").click()
    other.wait_for_url(re.compile(r".*/console$"))
    page.reload()
    page.get_by_role("button", name=re.compile("^End the session")).click()
    page.get_by_text("That session has ended.").wait_for()
    other.reload()
    assert "/console/login" in other.url
    # A second step: the secret and its QR code, turned on with a code from it; the recovery codes shown once.
    import pyotp

    page.goto("/console/account")
    page.get_by_role("link", name="Set it up").click()
    page.get_by_role("button", name="Set it up").click()
    secret = page.locator("code.secret").inner_text()
    assert page.get_by_role("img", name="QR code of the secret below").count() == 1
    accessible(page)
    shoot(page, "second-factor-scan")
    page.get_by_label("The code the app shows now").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn it on").click()
    page.get_by_role("heading", name="Your recovery codes").wait_for()
    assert page.locator("ul.codes li").count() == 10
    accessible(page)


def test_the_api_docs_run_in_a_browser_under_a_csp_that_allows_no_inline_script(browser: Any, site: Site) -> None:
    page = browser.new_page()
    said: list[str] = []
    page.on("console", lambda message: said.append(message.text))
    response = page.goto(f"{site.base}/docs")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    page.wait_for_selector(".opblock-tag", timeout=30_000)  # the operations, read from /openapi.json
    assert page.locator(".opblock").count() > 20
    assert [text for text in said if "Content Security Policy" in text] == []
    page.close()
