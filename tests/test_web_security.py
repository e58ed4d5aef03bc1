"""The console and the public pages as an attacker meets them, through HTTP: who may use every route (a matrix
generated from the app's own routes: a route nobody declared fails it), script in every field that is shown,
forged forms, open redirects, session fixation and expiry, the security headers, signed links changed, expired or
replayed, and guessing passwords (docs/console.md, docs/feedback.md).

One world is built once per module, with a payload in every field staff and customers can fill, and each test
gets its own copy of its SQLite database.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urljoin, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from markupsafe import escape
from starlette.routing import Mount

from amends.access import Scope
from amends.config import Settings
from amends.outreach.links import Links
from amends.recover.actors import SYSTEM
from amends.recover.cases import load_case, set_owner
from amends.recover.roles import Role
from amends.recover.staff import add_staff, create_staff_key, get_staff, set_password, update_staff
from amends.store import Database, tables, upgrade
from amends.web import create_app
from amends.web.console.dashboard import PLOTLY_JS
from tests.conftest import new_key, settings_for
from tests.test_console import PASSWORD, csrf_of
from tests.test_recovery import arrival, booking, profile

# --- payloads ----------------------------------------------------------------------------------------------


def payload(where: str) -> str:
    """Markup a browser would run, a URL that would run script, and a template expression, named for the field
    it is put in (so a page that shows it can be told apart)."""
    markup = "<script>alert(1)</script>\"><img src=x onerror=alert(1)><a href='javascript:alert(1)'>"
    return f"{where}{markup}{{{{'tmpl'~'ran'~7*7}}}}"


SHORT = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'  # for fields of at most 100 characters
# What {{'tmpl'~'ran'~7*7}} becomes if anything renders what was typed as a template (a marker no page shows
# by chance: the classic 7*'7' gives "7777777", which a chart's numbers can hold).
RUN_TEMPLATE = "tmplran49"
XSS_CUSTOMER = "javascript:alert(1)//" + SHORT  # a customer id is shown as text and in a link
XSS_RULE = f"""rules:
  - id: air-xss-delay
    description: {json.dumps(payload("rule-description"))}
    kind: match
    on: flight.arrived
    where: {{data.delay_minutes: {{gte: 180}}}}
    severity: 2
    tags: [{json.dumps(SHORT)}]
    playbook: long-delay
"""
DAY = timedelta(days=1)
NEW_PASSWORD = "lantern orchard quietly 42 sails"
SOUND_RULES = "rules:\n  - id: r1\n    kind: match\n    on: order.placed\n    severity: 3\n"

# --- the people ----------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    OK = "ok"  # served: the route did what was asked (or said it was done already)
    LOGIN = "login"  # a console page without a live session: to the login page
    UNAUTHORIZED = "unauthorized"  # an API route without a valid key: 401
    DENIED = "denied"  # a role that may not: 403
    HIDDEN = "hidden"  # something this person may not see: 404, as if it did not exist


@dataclass(frozen=True)
class Person:
    login: str
    role: Role
    team: str | None
    name: str


# Who asks: nobody, each role (in the team of the cases), an agent of another team, and a deactivated agent.
PEOPLE = {
    "agent": Person("ana", Role.AGENT, "air", "Ana Agent"),
    "lead": Person("lee", Role.LEAD, "air", payload("staff-name")),
    "manager": Person("boss", Role.MANAGER, None, "Bo Manager"),
    "admin": Person("root", Role.ADMIN, None, "Ad Min"),
    "outsider": Person("otto", Role.AGENT, "shop", "Otto Outsider"),
    "deactivated": Person("dee", Role.AGENT, "air", "Dee Gone"),
}
ACTORS = ("anonymous", *PEOPLE)
ROLE_ORDER = ("agent", "lead", "manager", "admin")  # the order in which those who may, do

# --- who may use each route -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    """Anyone, without a session or key: the login page, the public pages behind their signed links, health,
    the API's documentation and static files."""

    def expect(self, actor: str) -> Outcome:
        return Outcome.OK


@dataclass(frozen=True)
class Staff:
    """A console route: a live session of an active person of at least `least`; with `case`, only who may see
    the case (or the customer) it is about; with `owner`, only the case's owner."""

    least: Role = Role.AGENT
    case: bool = False
    owner: bool = False

    def expect(self, actor: str) -> Outcome:
        if actor in ("anonymous", "deactivated"):
            return Outcome.LOGIN
        if self.case and actor == "outsider":
            return Outcome.HIDDEN
        person = PEOPLE[actor]
        if not person.role.at_least(self.least) or (self.owner and actor != "agent"):
            return Outcome.DENIED
        return Outcome.OK


@dataclass(frozen=True)
class Key:
    """An API route: an active API key (a console session counts for nothing here); with `least`, a staff
    member's key of at least that role. Which scopes each /v1 route needs is the API tests' (tests/test_api_*)."""

    least: Role | None = None

    def expect(self, actor: str) -> Outcome:
        if actor in ("anonymous", "deactivated"):
            return Outcome.UNAUTHORIZED
        if self.least is not None and not PEOPLE[actor].role.at_least(self.least):
            return Outcome.DENIED
        return Outcome.OK


Policy = Open | Staff | Key
OPEN, STAFF, CASE, MANAGERS = Open(), Staff(), Staff(case=True), Staff(Role.MANAGER)

# Who may use every route that is not part of the /v1 API. Adding a route means declaring it here: the matrix
# below fails for a route that is missing (and for one that is listed but no longer exists).
POLICY: dict[tuple[str, str], Policy] = {
    ("GET", "/"): OPEN,
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/static/swagger-ui"): OPEN,
    ("GET", "/static/amends"): OPEN,
    ("GET", "/console/static"): OPEN,
    ("GET", PLOTLY_JS): OPEN,
    ("GET", "/f/{token}"): OPEN,
    ("POST", "/f/{token}"): OPEN,
    ("GET", "/u/{token}"): OPEN,
    ("POST", "/u/{token}"): OPEN,
    ("GET", "/console/login"): OPEN,
    ("POST", "/console/login"): OPEN,
    ("POST", "/console/logout"): STAFF,
    ("GET", "/console/account"): STAFF,  # each person their own: nothing in the path names anyone
    ("POST", "/console/account/password"): STAFF,
    ("POST", "/console/account/strength"): STAFF,
    ("POST", "/console/account/sessions/end"): STAFF,
    ("POST", "/console/account/key"): STAFF,  # one's own key, in place of the one in use
    ("POST", "/console/account/key/revoke"): STAFF,
    ("GET", "/console/account/second-factor"): STAFF,  # and a halfway session whose role needs it set up
    ("POST", "/console/account/second-factor/start"): STAFF,
    ("POST", "/console/account/second-factor/confirm"): STAFF,
    ("GET", "/console/login/code"): OPEN,  # a halfway session's only page; anyone else is sent on
    ("POST", "/console/login/code"): OPEN,
    ("GET", "/console"): STAFF,
    ("GET", "/console/cases/{case_id}"): CASE,
    ("POST", "/console/cases/{case_id}/acknowledge"): Staff(case=True, owner=True),
    ("POST", "/console/cases/{case_id}/draft"): CASE,
    ("POST", "/console/cases/{case_id}/apology"): CASE,
    ("POST", "/console/cases/{case_id}/remedy"): CASE,
    ("POST", "/console/cases/{case_id}/no-remedy"): CASE,
    ("POST", "/console/cases/{case_id}/assign"): Staff(Role.LEAD, case=True),  # hand over: leads and up
    ("POST", "/console/cases/{case_id}/resolve"): CASE,
    ("POST", "/console/cases/{case_id}/close"): CASE,
    ("POST", "/console/cases/{case_id}/reopen"): CASE,
    ("GET", "/console/customers/{customer_id:path}"): CASE,  # managers all; others through their cases
    ("GET", "/console/feedback"): STAFF,
    ("POST", "/console/feedback/{feedback_id}/reply"): STAFF,
    ("POST", "/console/feedback/{feedback_id}/correct"): STAFF,
    ("GET", "/console/feedback/suggestions"): STAFF,
    ("POST", "/console/feedback/suggestions/{suggestion_id}"): MANAGERS,
    ("GET", "/console/approvals"): MANAGERS,
    ("POST", "/console/approvals/{approval_id}"): MANAGERS,
    ("GET", "/console/ledger"): MANAGERS,
    ("GET", "/console/ledger/export.csv"): MANAGERS,
    ("POST", "/console/ledger/{entry_id}/reverse"): MANAGERS,
    ("GET", "/console/rules"): STAFF,
    ("POST", "/console/rules/check"): STAFF,
    ("GET", "/console/dashboard"): MANAGERS,
    ("GET", "/console/report"): MANAGERS,
    ("GET", "/v1/audit"): Key(Role.MANAGER),
}
API = Key()  # every other route under /v1/


def policy_of(method: str, path: str) -> Policy | None:
    return POLICY.get((method, path), API if path.startswith("/v1/") else None)


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, from its own routing table; a mounted directory as one GET."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            found.add(("GET", str(route.original_route.path)))
            continue
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, str(route.path)))
    return sorted(found)


# --- the world -----------------------------------------------------------------------------------------------


@dataclass
class Signed:
    """A person's live session (as of the world's building) and their staff API key."""

    token: str
    csrf: str
    key: str


@dataclass
class Seeded:
    """What the world holds: each id a test needs, each person's session and key, and the labels of the payloads
    that some page shows."""

    path: Path
    rules_dir: Path
    people: dict[str, Signed]
    cases: dict[str, int]  # the matrix's, one per action on a case, and "xss"
    customers: dict[str, str]
    approval: int
    entry: int
    feedback: int
    suggestion: int
    feedback_path: str
    unsubscribe_path: str
    public_pages: tuple[str, ...]  # the customer's pages that show payloads
    shown: tuple[str, ...]


# The matrix's cases, one for each action on a case: each is the agent's own, in the agent's team.
CASE_ACTIONS = ("page", "acknowledge", "draft", "apology", "remedy", "no-remedy", "assign", "resolve", "close",
                "reopen", "approval", "denied", "ledger")  # fmt: skip


def world_settings(db: Database, rules_dir: Path, **overrides: object) -> Settings:
    return settings_for(
        db,
        rule_packs=("airline",),
        rules_dir=rules_dir,
        detect_clock="events",
        detect_allowed_lateness="0s",
        assign_teams={"air-*": "air"},
        **{"company_name": payload("company"), "public_url": "http://testserver", **overrides},
    )


def browser(app: Any, *, base_url: str = "http://testserver", address: str = "testclient") -> TestClient:
    """A new client with cookies of its own: one person's browser (redirects are not followed)."""
    return TestClient(app, base_url=base_url, follow_redirects=False, client=(address, 50000))


def log_in(client: TestClient, login: str, password: str, next_url: str = "/console", **headers: str) -> httpx.Response:
    page = client.get(f"/console/login?next={quote(next_url)}")
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None, page.text
    return client.post(
        "/console/login",
        data={"login": login, "password": password, "nonce": nonce.group(1), "next": next_url},
        headers=headers,
    )


def customer_events(customer: str, number: int, text: str = "") -> list[dict[str, object]]:
    """A customer's profile, booking and a flight three hours late (two incidents, one case); `text` goes into
    their name, the flight's number and the booking's reference."""
    late = arrival(number, customer, 200, booking_ref=f"BK{number}{text}")
    late["data"] = {**late["data"], "flight_no": f"AA{number}{text}"}  # type: ignore[dict-item]
    name = {"name": f"Alex {text}".strip(), "email": f"c{number}@example.com", "language": "en"}
    return [
        {**profile(customer, **name), "id": f"p-{number}"},
        {**booking(1, customer, 300.0), "id": f"b-{number}"},
        {**late, "id": f"f-{number}"},
    ]


@dataclass
class _Building:
    """The world while it is built: its app, the people signed in, and the payloads some page shows."""

    app: FastAPI
    client: TestClient
    db: Database
    key: str  # an integration's, that may do everything
    people: dict[str, Signed] = field(default_factory=dict)
    shown: list[str] = field(default_factory=list)

    def shows(self, where: str) -> str:
        """A payload for a field that some page shows (the test of payloads looks for it, escaped)."""
        self.shown.append(where)
        return payload(where)

    def form(self, actor: str, path: str, **fields: str) -> None:
        """Post a console form as `actor`, from their page; it must be done."""
        own = browser(self.app)
        own.cookies.set("amends_session", self.people[actor].token)
        response = own.post(path, data={"csrf": self.people[actor].csrf, **fields})
        assert response.status_code == 303, (path, response.status_code, response.text[-2000:])

    def api(self, path: str, body: object) -> Any:
        """Post to the API as the integration."""
        response = self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.key}"})
        assert response.status_code in (200, 201), response.text
        return response.json()

    def sign_everyone_in(self) -> None:
        """A session and a staff key for each person; then the deactivated one is deactivated."""
        now = datetime.now(UTC)
        for actor, person in PEOPLE.items():
            own = browser(self.app)
            assert log_in(own, person.login, PASSWORD).status_code == 303
            with self.db.unit_of_work(writes=True) as uow:
                _key, key = create_staff_key(uow, person.login, now=now)
                uow.commit()
            self.people[actor] = Signed(own.cookies["amends_session"], csrf_of(own.get("/console").text), key)
        with self.db.unit_of_work(writes=True) as uow:
            update_staff(uow, PEOPLE["deactivated"].login, active=False)  # ends the session; the key is refused
            uow.commit()

    def open_cases(self, customers: Mapping[str, str]) -> dict[str, int]:
        """A case for each customer (the events, then the clock past their timers), each owned by the agent."""
        events = [e for n, (which, c) in enumerate(customers.items(), 1) for e in customer_events(c, n)
                  if which != "xss"]  # fmt: skip
        events += customer_events(customers["xss"], 99, self.shows("event-data"))
        self.api("/v1/events", [*events, {**arrival(990, "C-tick", 0, day=31), "type": "clock.tick"}])
        self.app.state.recovery.tick()
        now = datetime.now(UTC)
        with self.db.unit_of_work(writes=True) as uow:
            agent = get_staff(uow, PEOPLE["agent"].login)
            cases: dict[str, int] = {}
            for which, customer in customers.items():
                case_id = uow.execute(sa.select(tables.cases.c.id).where(tables.cases.c.customer_id == customer))
                case = load_case(uow, int(case_id.scalar_one()))
                if case.owner_id != agent.id:
                    set_owner(uow, case, agent, reason="the matrix's", by=SYSTEM, now=now)
                cases[which] = case.id
            uow.commit()
        return cases

    def feedback_page(self, interaction: str, customer: str, **body: str) -> str:
        made = self.api("/v1/feedback-requests", {"customer": customer, "interaction": interaction, **body})
        return str(made["url"]).removeprefix("http://testserver")


def seed(base: Path) -> Seeded:
    """Build the world: staff of every role, signed in; a case for each action of the matrix; and, through the API
    and the console as people use them, a payload in every field that people can fill."""
    rules_dir = base / "rules"
    rules_dir.mkdir()
    (rules_dir / "xss.yaml").write_text(XSS_RULE)
    db = Database(f"sqlite:///{base / 'world.db'}")
    upgrade(db)
    with db.unit_of_work(writes=True) as uow:
        for person in PEOPLE.values():
            add_staff(uow, person.login, name=person.name, role=person.role, team=person.team,
                      email=f"{person.login}@example.com", now=datetime.now(UTC))  # fmt: skip
            set_password(uow, person.login, PASSWORD, now=datetime.now(UTC))
        uow.commit()
    app = create_app(world_settings(db, rules_dir), db)
    with TestClient(app) as client:
        integration = new_key(db, "integration", list(Scope))
        world = _Building(app, client, db, integration, shown=["company", "staff-name", "rule-description"])
        world.sign_everyone_in()
        customers = {**{which: f"M-{which}" for which in CASE_ACTIONS}, "xss": XSS_CUSTOMER}
        cases = world.open_cases(customers)

        def on_case(which: str, verb: str, actor: str = "agent", **fields: str) -> None:
            world.form(actor, f"/console/cases/{cases[which]}/{verb}", **fields)

        # The matrix's cases in the state each action needs.
        on_case("close", "resolve", resolution="Rebooked and refunded.")
        on_case("reopen", "resolve", resolution="Rebooked and refunded.")
        on_case("approval", "remedy", kind="voucher", amount="150", action="request_approval")
        on_case("denied", "remedy", kind="voucher", amount="150", action="request_approval",
                note=world.shows("approval-note"))  # fmt: skip
        on_case("ledger", "remedy", kind="voucher", amount="20", action="grant")
        on_case("page", "draft", text=world.shows("draft"))
        # What staff write on a case: the apology and its note, a remedy's note, a handoff's reason; and what is
        # kept though no page shows it (the resolution, the reason to reopen).
        on_case("xss", "apology", text=world.shows("apology"), note=world.shows("contact-note"))
        on_case("xss", "remedy", kind="voucher", amount="20", action="grant", note=world.shows("remedy-note"))
        on_case("xss", "resolve", resolution=payload("resolution"))
        on_case("xss", "reopen", reason=payload("reopen-reason"))
        on_case("xss", "assign", "lead", to=PEOPLE["lead"].login, reason=world.shows("handoff-reason"))
        with db.unit_of_work() as uow:
            approvals = dict(uow.execute(sa.select(tables.approvals.c.case_id, tables.approvals.c.id)).all())
            entries = dict(uow.execute(sa.select(tables.ledger.c.case_id, tables.ledger.c.id)).all())
        world.form("manager", f"/console/approvals/{approvals[cases['denied']]}", decision="deny",
                   reason=world.shows("approval-reason"))  # fmt: skip
        world.form("manager", f"/console/ledger/{entries[cases['xss']]}/reverse", reason=payload("reversal"))

        # What customers write, through the API: a complaint, feedback and its author, a suggestion; and the answers.
        def wrote(source_id: str, customer: str, text: str, **more: str) -> Any:
            body = {"source": "mailbox", "id": source_id, "channel": "email", "customer": customer, "text": text}
            return world.api("/v1/complaints" if source_id.startswith("cx") else "/v1/feedback", {**body, **more})

        wrote("cx-1", XSS_CUSTOMER, world.shows("complaint"), reference=payload("complaint-reference"))
        said = wrote(
            "fb-xss", XSS_CUSTOMER, "Nobody helped me. " + world.shows("feedback"), author=world.shows("author")
        )
        idea = "It would be great if you could add an option to choose my seat online. " + world.shows("suggestion")
        wrote("fb-idea", customers["page"], idea)
        thanks = wrote("fb-thanks", customers["page"], "Thank you, Maria at the desk was wonderful!")
        world.form("agent", f"/console/feedback/{said['id']}/reply", view="all", text=world.shows("reply"),
                   channel="phone")  # fmt: skip
        with db.unit_of_work() as uow:
            suggestion = int(uow.execute(sa.select(tables.suggestions.c.id)).scalar_one())
        world.form("manager", f"/console/feedback/suggestions/{suggestion}", status="planned",
                   note=world.shows("suggestion-note"))  # fmt: skip

        # The customer's pages: a question about an invoice (its reference shown), one answered with a payload.
        asked = world.feedback_page("invoice:xss-asked", XSS_CUSTOMER, reference=world.shows("reference"))
        answered = world.feedback_page("invoice:xss-answered", XSS_CUSTOMER)
        assert client.post(answered, data={"liked": world.shows("answer"), "rating": "2"}).status_code == 200
        links: Links = app.state.outreach.links
        unsubscribe = links.unsubscribe_url(XSS_CUSTOMER).removeprefix("http://testserver")
        feedback_path = world.feedback_page("invoice:matrix", customers["page"])
        unsubscribe_path = links.unsubscribe_url(customers["page"]).removeprefix("http://testserver")
    db.dispose()
    return Seeded(
        base / "world.db", rules_dir, world.people, cases, customers, approvals[cases["approval"]],
        entries[cases["ledger"]], thanks["id"], suggestion, feedback_path, unsubscribe_path,
        (asked, answered, unsubscribe), tuple(world.shown),
    )  # fmt: skip


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("web-security"))


@dataclass
class World:
    app: FastAPI
    client: TestClient
    db: Database
    seeded: Seeded

    def browser(self, actor: str = "anonymous", **kwargs: Any) -> TestClient:
        """A browser of `actor`, with their session cookie (none for anonymous)."""
        own = browser(self.app, **kwargs)
        if actor != "anonymous":
            own.cookies.set("amends_session", self.seeded.people[actor].token)
        return own

    def csrf(self, actor: str) -> str:
        return self.seeded.people[actor].csrf if actor != "anonymous" else ""

    def key(self, actor: str) -> dict[str, str]:
        return {} if actor == "anonymous" else {"Authorization": f"Bearer {self.seeded.people[actor].key}"}


def copy_of(seeded: Seeded, into: Path) -> Database:
    """A copy of the world's database (SQLite's backup: the write-ahead log comes along)."""
    target = into / "amends.db"
    with closing(sqlite3.connect(seeded.path)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return Database(f"sqlite:///{target}")


@contextmanager
def world_of(seeded: Seeded, into: Path, **overrides: object) -> Iterator[World]:
    """An app over a copy of the world, with settings of its own."""
    db = copy_of(seeded, into)
    app = create_app(world_settings(db, seeded.rules_dir, **overrides), db)
    try:
        with TestClient(app) as client:
            yield World(app, client, db, seeded)
    finally:
        db.dispose()


@pytest.fixture
def world(seeded: Seeded, tmp_path: Path) -> Iterator[World]:
    with world_of(seeded, tmp_path) as built:
        yield built


def snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table but the sessions' (whose last use a page view may record)."""
    with db.engine.connect() as connection:
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(sa.select(table)))
            for table in tables.metadata.sorted_tables
            if table.name != "console_sessions"
        }


def changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# --- how each route is called ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A request that uses a route as it is meant to be used: its path with real objects, a POST's fields (the
    person's CSRF token is added), and the statuses that mean it was served."""

    path: str
    form: Mapping[str, str] | None = None
    ok: tuple[int, ...] = (200, 303)
    send: Callable[[TestClient], httpx.Response] | None = None


_VALUES = {"case_id": "1", "customer_id": "C-1", "incident_id": "1", "approval_id": "1", "entry_id": "1",
           "staff_id": "ana", "message_id": "1", "task_id": "1", "provider": "postmark", "reply_id": "1",
           "feedback_id": "1", "request_id": "1", "kind": "svg", "suggestion_id": "1"}  # fmt: skip


def filled(template: str) -> str:
    """An API route's path with a value for each parameter (a new parameter needs one in _VALUES)."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: _VALUES[m.group(1)], template)


def probes(seeded: Seeded) -> dict[tuple[str, str], Probe]:
    """A probe for every route outside the API, on the objects of the world; API routes are filled in."""
    cases = seeded.cases

    def on_case(which: str, verb: str = "", **form: str) -> Probe:
        return Probe(f"/console/cases/{cases[which]}" + (f"/{verb}" if verb else ""), form if verb else None)

    def wrong_password(client: TestClient) -> httpx.Response:
        return log_in(client, "nobody", "not a password of anyone")

    return {
        ("GET", "/"): Probe("/", ok=(307,)),
        ("GET", "/healthz"): Probe("/healthz"),
        ("GET", "/readyz"): Probe("/readyz"),
        ("GET", "/docs"): Probe("/docs"),
        ("GET", "/openapi.json"): Probe("/openapi.json"),
        ("GET", "/static/swagger-ui"): Probe("/static/swagger-ui/swagger-ui.css"),
        ("GET", "/static/amends"): Probe("/static/amends/api-docs.js"),
        ("GET", "/console/static"): Probe("/console/static/console.css"),
        ("GET", PLOTLY_JS): Probe(PLOTLY_JS),
        ("GET", "/f/{token}"): Probe(seeded.feedback_path),
        ("POST", "/f/{token}"): Probe(seeded.feedback_path, {"liked": "Quick and kind.", "rating": "5"}),
        ("GET", "/u/{token}"): Probe(seeded.unsubscribe_path),
        ("POST", "/u/{token}"): Probe(seeded.unsubscribe_path, {}),
        ("GET", "/console/login"): Probe("/console/login"),
        ("POST", "/console/login"): Probe("/console/login", ok=(401,), send=wrong_password),
        ("POST", "/console/logout"): Probe("/console/logout", {}),
        ("GET", "/console/account"): Probe("/console/account"),
        ("POST", "/console/account/password"): Probe(
            "/console/account/password", {"current": PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD}
        ),
        ("POST", "/console/account/strength"): Probe("/console/account/strength", {"password": "lantern"}, ok=(200,)),
        ("POST", "/console/account/sessions/end"): Probe("/console/account/sessions/end", {"session": "0" * 16}),
        ("POST", "/console/account/key"): Probe("/console/account/key", {}),
        ("POST", "/console/account/key/revoke"): Probe("/console/account/key/revoke", {}),
        ("GET", "/console/account/second-factor"): Probe("/console/account/second-factor"),
        ("POST", "/console/account/second-factor/start"): Probe("/console/account/second-factor/start", {}),
        # Before /start has made a secret to confirm: 409; after it, a wrong code: 422.
        ("POST", "/console/account/second-factor/confirm"): Probe(
            "/console/account/second-factor/confirm", {"code": "000000"}, ok=(409, 422)
        ),
        ("GET", "/console/login/code"): Probe("/console/login/code", ok=(303,)),
        ("POST", "/console/login/code"): Probe("/console/login/code", {"code": "000000"}, ok=(303,)),
        ("GET", "/console"): Probe("/console"),
        ("GET", "/console/cases/{case_id}"): on_case("page"),
        ("POST", "/console/cases/{case_id}/acknowledge"): on_case("acknowledge", "acknowledge"),
        ("POST", "/console/cases/{case_id}/draft"): on_case("draft", "draft", text="Dear Alex, we are sorry."),
        ("POST", "/console/cases/{case_id}/apology"): on_case("apology", "apology", text="We are so sorry."),
        ("POST", "/console/cases/{case_id}/remedy"): on_case("remedy", "remedy", kind="voucher", amount="20"),
        ("POST", "/console/cases/{case_id}/no-remedy"): on_case("no-remedy", "no-remedy", reason="Rebooked at once."),
        ("POST", "/console/cases/{case_id}/assign"): on_case("assign", "assign", to="boss", reason="Needs a manager."),
        ("POST", "/console/cases/{case_id}/resolve"): on_case("resolve", "resolve", resolution="Refunded."),
        ("POST", "/console/cases/{case_id}/close"): on_case("close", "close"),
        ("POST", "/console/cases/{case_id}/reopen"): on_case("reopen", "reopen", reason="The refund bounced."),
        ("GET", "/console/customers/{customer_id:path}"): Probe(f"/console/customers/{seeded.customers['page']}"),
        ("GET", "/console/feedback"): Probe("/console/feedback?view=all"),
        ("POST", "/console/feedback/{feedback_id}/reply"): Probe(
            f"/console/feedback/{seeded.feedback}/reply", {"view": "all", "text": "Thank you!", "channel": "phone"}
        ),
        ("POST", "/console/feedback/{feedback_id}/correct"): Probe(
            f"/console/feedback/{seeded.feedback}/correct", {"view": "all", "field": "urgency", "value": "normal"}
        ),
        ("GET", "/console/feedback/suggestions"): Probe("/console/feedback/suggestions"),
        ("POST", "/console/feedback/suggestions/{suggestion_id}"): Probe(
            f"/console/feedback/suggestions/{seeded.suggestion}", {"status": "done", "note": "Seats online now."}
        ),
        ("GET", "/console/approvals"): Probe("/console/approvals"),
        ("POST", "/console/approvals/{approval_id}"): Probe(
            f"/console/approvals/{seeded.approval}", {"decision": "approve", "reason": "A long delay."}
        ),
        ("GET", "/console/ledger"): Probe("/console/ledger"),
        ("GET", "/console/ledger/export.csv"): Probe("/console/ledger/export.csv"),
        ("POST", "/console/ledger/{entry_id}/reverse"): Probe(
            f"/console/ledger/{seeded.entry}/reverse", {"reason": "Granted twice."}
        ),
        ("GET", "/console/rules"): Probe("/console/rules"),
        ("POST", "/console/rules/check"): Probe("/console/rules/check", {"document": "rules", "text": SOUND_RULES}),
        ("GET", "/console/dashboard"): Probe("/console/dashboard"),
        ("GET", "/console/report"): Probe("/console/report?format=html"),
        ("GET", "/v1/audit"): Probe("/v1/audit"),
    }


def outcome_of(response: httpx.Response) -> Outcome:
    if response.status_code == 303 and response.headers["location"].startswith("/console/login?next="):
        return Outcome.LOGIN
    return {401: Outcome.UNAUTHORIZED, 403: Outcome.DENIED, 404: Outcome.HIDDEN}.get(response.status_code, Outcome.OK)


def call(world: World, method: str, probe: Probe, actor: str, policy: Policy) -> httpx.Response:
    """The probe as `actor` sends it: with their session cookie and CSRF token, or (an API route) their key."""
    if isinstance(policy, Key):
        client = world.browser()
        return client.request(method, probe.path, headers=world.key(actor))
    client = world.browser(actor)
    if probe.send is not None:
        return probe.send(client)
    if method == "GET":
        return client.get(probe.path)
    return client.post(probe.path, data={"csrf": world.csrf(actor), **(probe.form or {})})


# --- 1. who may use each route --------------------------------------------------------------------------------


def test_every_route_is_declared_and_answers_each_person_as_declared(world: World) -> None:
    routes = app_routes(world.app)
    undeclared = [route for route in routes if policy_of(*route) is None]
    assert not undeclared, f"declare who may use these routes in POLICY: {undeclared}"
    assert not set(POLICY) - set(routes), f"POLICY lists routes the app no longer has: {set(POLICY) - set(routes)}"
    table = probes(world.seeded)
    unprobed = [route for route in routes if route not in table and not route[1].startswith("/v1/")]
    assert not unprobed, f"say how to call these routes in probes(): {unprobed}"

    def order(route: tuple[str, str]) -> tuple[bool, bool, str]:  # pages first, logging out last
        return route[0] != "GET", route[1] == "/console/logout", route[1]

    before_pages = snapshot(world.db)
    checked = 0
    for method, path in sorted(routes, key=order):
        if method != "GET" and before_pages:  # every page has been viewed: viewing changed nothing
            assert changes(before_pages, snapshot(world.db)) == []
            before_pages = {}
        policy = policy_of(method, path)
        assert policy is not None
        probe = table.get((method, path)) or Probe(filled(path))
        actors = ACTORS
        if isinstance(policy, Open):
            actors = ("anonymous",)
        elif isinstance(policy, Key) and policy.least is None:
            actors = ("anonymous", "deactivated")  # what each role's key may do is the API tests'
        expected = {actor: policy.expect(actor) for actor in actors}
        # Those refused first, then those who may, the least trusted first: a refusal must find the thing untouched.
        turns = sorted(actors, key=lambda a: (expected[a] is Outcome.OK, ROLE_ORDER.index(a) if a in ROLE_ORDER else 0))
        served = False
        for actor in turns:
            before = snapshot(world.db) if method != "GET" and expected[actor] is not Outcome.OK else None
            response = call(world, method, probe, actor, policy)
            where = f"{method} {path} as {actor}: {response.status_code} {response.text[:300]!r}"
            got = outcome_of(response)
            if got is not Outcome.LOGIN and response.status_code in probe.ok:
                got = Outcome.OK  # a login with a wrong password is served, with 401
            assert got is expected[actor], where
            if expected[actor] is Outcome.OK:
                # The first who may is served; after them, the thing may be done already (409).
                assert response.status_code in (probe.ok if not served else (*probe.ok, 409)), where
                served = True
            elif before is not None:
                assert changes(before, snapshot(world.db)) == [], f"refused, yet something changed: {where}"
            checked += 1
        if isinstance(policy, Key):  # a console session is no API key: no cookie ever opens the API
            assert world.browser("admin").request(method, probe.path).status_code == 401, (method, path)
    assert checked > 200


# --- 2. script in what is shown ---------------------------------------------------------------------------------


class _Dangers(HTMLParser):
    """What in a page would run: inline script, event handler attributes, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}={value!r}>")
            if name in ("href", "src", "action", "formaction") and re.sub(r"\s", "", value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag == "script":
            self._script = dict(attrs)
            src = self._script.get("src")
            if src is not None and not src.startswith(("/console/static/", "/console/vendor/")):
                self.found.append(f"<script src={src!r}>")

    def handle_data(self, data: str) -> None:
        if self._script is not None and self._script.get("type") != "application/json" and data.strip():
            self.found.append(f"inline script {data[:80]!r}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None


def dangers(html: str) -> list[str]:
    parsed = _Dangers()
    parsed.feed(html)
    found = parsed.found
    if "<script>alert" in html or "<img src=x" in html:
        found.append("raw payload markup")
    if RUN_TEMPLATE in html:
        found.append("a payload rendered as a template")
    return found


def test_a_payload_in_any_field_is_shown_as_text_and_never_runs(world: World) -> None:
    seeded = world.seeded
    table = probes(seeded)
    pages: list[tuple[str, str, httpx.Response]] = []

    def fetch(actor: str, path: str, **form: str) -> None:
        client = world.browser(actor)
        response = client.post(path, data={"csrf": world.csrf(actor), **form}) if form else client.get(path)
        pages.append((actor, path, response))

    # Every page of the console and the public pages, as each role that may open it, and as nobody.
    for (method, path), probe in table.items():
        policy = policy_of(method, path)
        if method != "GET" or path == "/docs" or isinstance(policy, Key):
            continue
        for actor in ("anonymous", "agent", "lead", "admin"):
            if policy is not None and policy.expect(actor) is Outcome.OK:
                fetch(actor, probe.path)
    # The pages that show the world's payloads, and those that repeat what a URL or a form said.
    xss_case, customer = seeded.cases["xss"], quote(XSS_CUSTOMER, safe="")
    showing = (f"/console/cases/{xss_case}", f"/console/customers/{customer}", "/console/feedback?view=all",
               "/console/approvals?status=denied", "/console/ledger", "/console/feedback/suggestions")  # fmt: skip
    for actor in ("agent", "lead", "admin"):
        for path in showing:
            fetch(actor, path)
    for path in (
        f"/console?rule={quote(SHORT)}&owner={quote(SHORT)}&team={quote(SHORT)}",
        f"/console/ledger?kind={quote(SHORT[:50])}&granted_by={quote(SHORT)}",
        f"/console/feedback?view=all&cursor={quote(SHORT)}",
        f"/console/customers/{customer}?before={quote(SHORT)}",
        f"/console/{quote(SHORT)}",
        f"/console/cases/{quote(SHORT)}",
        f"/console?origin={quote(SHORT[:20])}",
        f"/console/report?format={quote(SHORT)}",
    ):
        fetch("admin", path)
    fetch("admin", "/console/rules/check", document="rules", text=f"rules:\n  - id: {SHORT}\n    kind: {SHORT}\n")
    fetch("admin", f"/console/cases/{xss_case}/remedy", kind=SHORT, amount=SHORT, note=SHORT)
    fetch("anonymous", f"/console/login?next=/console{quote(SHORT)}")
    for path in seeded.public_pages:
        fetch("anonymous", path)
    fetch("anonymous", f"/f/{quote(SHORT)}")
    fetch("anonymous", seeded.public_pages[0], liked=payload("typed"), rating=SHORT)

    shown: list[str] = []
    for actor, path, response in pages:
        if not response.headers.get("content-type", "").startswith("text/html"):
            continue
        assert dangers(response.text) == [], (actor, path, response.status_code)
        shown.append(response.text)
    everything = "\n".join(shown)
    # Each payload did reach a page, escaped: a field never shown would prove nothing here.
    missing = [where for where in (*seeded.shown, "typed") if str(escape(f"{where}<script>")) not in everything]
    assert missing == [], missing
    assert str(escape(XSS_CUSTOMER)) in everything
    assert len(shown) > 60


# --- 3. forged forms ----------------------------------------------------------------------------------------------


def test_a_console_form_without_its_token_or_from_another_site_is_refused_and_changes_nothing(world: World) -> None:
    table = probes(world.seeded)
    forms = [route for route in app_routes(world.app) if route[0] == "POST" and route[1].startswith("/console/")]
    forms = sorted((r for r in forms if r[1] != "/console/login"), key=lambda r: r[1] == "/console/logout")
    assert len(forms) >= 15
    for route in forms:
        policy, probe = POLICY[route], table[route]
        actor = next(a for a in ROLE_ORDER if policy.expect(a) is Outcome.OK)
        form, own = dict(probe.form or {}), world.csrf(actor)
        forged = {
            "no token": ({**form}, {}),
            "an empty token": ({**form, "csrf": ""}, {}),
            "a wrong token": ({**form, "csrf": "x" * len(own)}, {}),
            "another session's token": ({**form, "csrf": world.csrf("admin" if actor != "admin" else "agent")}, {}),
            "another site": ({**form, "csrf": own}, {"Origin": "https://evil.example"}),
            "another site's page": ({**form, "csrf": own}, {"Referer": "https://evil.example/page"}),
            "a sandboxed frame": ({**form, "csrf": own}, {"Origin": "null"}),
            "a look-alike host": ({**form, "csrf": own}, {"Origin": "http://testserver.evil.example"}),
            "our host over another scheme": ({**form, "csrf": own}, {"Origin": "https://testserver"}),
        }
        client = world.browser(actor)
        before = snapshot(world.db)
        for why, (fields, headers) in forged.items():
            refused = client.post(probe.path, data=fields, headers=headers)
            assert refused.status_code == 403, (route, why, refused.status_code)
            assert "CSRF" in refused.text or "another site" in refused.text, (route, why)
        # A body another site can send without asking first (text/plain) is not read as a form.
        plain = client.post(
            probe.path, content=urlencode({**form, "csrf": own}), headers={"Content-Type": "text/plain"}
        )
        assert plain.status_code in (403, 422), (route, plain.status_code)
        assert changes(before, snapshot(world.db)) == [], route
        assert client.get("/console").status_code == 200, route  # a forged logout ended nothing either
        # From the console's own page, with its token, the same form is done: the token and the origin were why.
        ours = {"Origin": "http://testserver", "Referer": "http://testserver/console"}
        assert client.post(probe.path, data={**form, "csrf": own}, headers=ours).status_code in probe.ok, route


def nonce_of(client: TestClient) -> str:
    """The login form's nonce, from a fresh login page (which sets the cookie it must match)."""
    found = re.search(r'name="nonce" value="([^"]+)"', client.get("/console/login").text)
    assert found is not None
    return found.group(1)


def test_a_login_needs_the_nonce_of_its_own_page_and_our_origin(world: World) -> None:
    def log_in_with(client: TestClient, nonce: str | None, **headers: str) -> httpx.Response:
        fields = {"login": "ana", "password": PASSWORD, "next": "/console"}
        return client.post("/console/login", data=fields if nonce is None else {**fields, "nonce": nonce},
                           headers=headers)  # fmt: skip

    victim, attacker = world.browser(), world.browser()
    sessions = snapshot(world.db)  # a refused login writes nothing, not even an audit entry
    forged: dict[str, Callable[[str], httpx.Response]] = {  # each given the nonce of the victim's fresh page
        "no nonce": lambda _nonce: log_in_with(victim, None),
        "an empty nonce": lambda _nonce: log_in_with(victim, ""),
        "the attacker's nonce": lambda _nonce: log_in_with(victim, nonce_of(attacker)),
        "a nonce without its cookie": lambda nonce: log_in_with(world.browser(), nonce),
        "another site": lambda nonce: log_in_with(victim, nonce, Origin="https://evil.example"),
        "another site's page": lambda nonce: log_in_with(victim, nonce, Referer="https://evil.example/"),
    }
    for why, attempt in forged.items():
        response = attempt(nonce_of(victim))
        assert response.status_code == 403, (why, response.status_code)
        assert "amends_session" not in response.cookies, why
    assert changes(sessions, snapshot(world.db)) == []
    with world.db.engine.connect() as connection:
        live = connection.execute(sa.select(sa.func.count()).select_from(tables.console_sessions)).scalar_one()
    assert log_in_with(victim, nonce_of(victim), Origin="http://testserver").status_code == 303
    with world.db.engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.console_sessions)).scalar_one() == live + 1
        )


# --- 4. open redirects ------------------------------------------------------------------------------------------

ELSEWHERE = (
    "//evil.example", "https://evil.example/console", "http:evil.example", "/\\evil.example", "\\\\evil.example",
    "%2F%2Fevil.example", "/%2F/evil.example", " //evil.example", "/\t/evil.example", "javascript:alert(1)",
    "/console@evil.example", "/console//evil.example", "/console/../docs", "/console/%2e%2e/docs",
    "/console/%2E%2E/%2e%2e//evil.example", "/console/..\\..\\evil.example", "/console\t/../../docs",
    "/console/./../v1/audit", "/consolex/../docs", "/console/login?next=//evil.example",
)  # fmt: skip


def lands_in_the_console(location: str) -> bool:
    """Whether a browser told to go to `location` from a console page stays on a console page of this server (as
    browsers read a URL: tabs and newlines dropped, a backslash as a slash, %2e as a dot)."""
    read = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    read = re.sub("%2e", ".", read, flags=re.IGNORECASE)
    target = urlsplit(urljoin("http://testserver/console/login", read))
    on_console = target.path == "/console" or target.path.startswith("/console/")
    return (target.scheme, target.netloc) == ("http", "testserver") and on_console


def test_after_login_the_browser_goes_only_to_a_console_page(world: World) -> None:
    for where in ELSEWHERE[:3]:  # through the form itself, by name and password
        location = log_in(world.browser(), "ana", PASSWORD, where).headers["location"]
        assert lands_in_the_console(location), (where, location)
    signed = world.browser("agent")  # signed in: the login page sends on at once, by the same rule
    anonymous = world.browser()
    for where in ELSEWHERE:
        location = signed.get("/console/login", params={"next": where}).headers["location"]
        assert lands_in_the_console(location), (where, location)
        form = re.search(r'name="next" value="([^"]*)"', anonymous.get("/console/login", params={"next": where}).text)
        assert form is not None
        assert lands_in_the_console(str(escape(form.group(1)).unescape())), (where, form.group(1))
    # A page asked for without a session remembers it, and only as a console path.
    asked = anonymous.get("/console/customers//evil.example").headers["location"]
    assert asked.startswith("/console/login?next=")
    assert lands_in_the_console(parse_qs(urlsplit(asked).query)["next"][0])


# --- 5. sessions ---------------------------------------------------------------------------------------------------


def session_row(db: Database, token: str) -> Any:
    digest = hashlib.sha256(token.encode()).hexdigest()
    with db.engine.connect() as connection:
        return connection.execute(
            sa.select(tables.console_sessions).where(tables.console_sessions.c.id == digest)
        ).first()


def test_a_session_is_made_at_login_kept_only_as_a_hash_and_never_taken_over(world: World) -> None:
    planted = secrets.token_urlsafe(32)  # a cookie an attacker set in the browser before its owner logs in
    victim = world.browser()
    victim.cookies.set("amends_session", planted)
    logged_in = log_in(victim, "ana", PASSWORD)
    assert logged_in.status_code == 303
    token = logged_in.cookies["amends_session"]
    assert token != planted
    assert len(token) >= 43  # 256 random bits
    signed = world.browser()
    signed.cookies.set("amends_session", token)
    assert "Ana Agent" in signed.get("/console").text
    attacker = world.browser()
    attacker.cookies.set("amends_session", planted)
    assert attacker.get("/console").headers["location"].startswith("/console/login")
    with world.db.engine.connect() as connection:
        stored = "\n".join(repr(tuple(row)) for row in connection.execute(sa.select(tables.console_sessions)))
    assert token not in stored  # only its SHA-256
    assert session_row(world.db, token) is not None


def test_logout_ends_the_session_on_the_server(world: World) -> None:
    client = world.browser()
    log_in(client, "ana", PASSWORD)
    token = client.cookies["amends_session"]
    page = client.get("/console")
    assert client.post("/console/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert session_row(world.db, token) is None
    replayed = world.browser()
    replayed.cookies.set("amends_session", token)
    assert replayed.get("/console").headers["location"].startswith("/console/login")
    assert replayed.post("/console/logout", data={"csrf": csrf_of(page.text)}).status_code == 303  # to the login
    assert replayed.get("/console/ledger").status_code == 303


def test_a_session_ends_after_its_idle_time_and_at_its_absolute_expiry(world: World) -> None:
    sessions = tables.console_sessions
    settings: Settings = world.app.state.settings
    idle, lifetime = settings.console_session_idle, settings.console_session_lifetime

    def fresh_session() -> tuple[TestClient, str]:
        client = world.browser()
        log_in(client, "ana", PASSWORD)
        return client, hashlib.sha256(client.cookies["amends_session"].encode()).hexdigest()

    def set_times(digest: str, **times: datetime) -> None:
        with world.db.engine.begin() as connection:
            connection.execute(sa.update(sessions).where(sessions.c.id == digest).values(**times))

    now = datetime.now(UTC)
    client, digest = fresh_session()
    row = session_row(world.db, client.cookies["amends_session"])
    assert row.expires_at - row.created_at == lifetime
    set_times(digest, last_seen_at=now - idle + timedelta(minutes=2))  # nearly idle: still in, and kept alive
    assert client.get("/console").status_code == 200
    kept = session_row(world.db, client.cookies["amends_session"])
    assert kept.last_seen_at > now - timedelta(minutes=1)
    assert kept.expires_at == row.expires_at  # use never moves the absolute expiry
    set_times(digest, last_seen_at=now - idle - timedelta(seconds=1))
    assert client.get("/console").headers["location"].startswith("/console/login")

    client, digest = fresh_session()  # used a moment ago, but past its lifetime
    set_times(digest, created_at=now - lifetime - timedelta(minutes=1), expires_at=now - timedelta(seconds=1))
    assert client.get("/console").headers["location"].startswith("/console/login")


# --- 6. headers ---------------------------------------------------------------------------------------------------


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for directive in filter(None, (part.strip() for part in policy.split(";"))):
        name, *values = directive.split()
        parsed[name.lower()] = values
    return parsed


def strict_header_problems(response: httpx.Response, *, secure: bool) -> list[str]:
    """What a console or public page's answer lacks: a content security policy under which no injected script
    runs and no site frames the page, no sniffing, no caching, and HSTS exactly when served over HTTPS."""
    headers, problems = response.headers, []
    if headers.get("content-type", "").startswith("text/html"):
        policy = directives(headers.get("content-security-policy", ""))
        scripts = policy.get("script-src", policy.get("default-src", ["(none given)"]))
        if {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:", "(none given)"} & set(scripts):
            problems.append(f"script-src {scripts}")
        if policy.get("object-src", policy.get("default-src")) != ["'none'"]:
            problems.append("plugins allowed")
        if policy.get("frame-ancestors") != ["'none'"] or policy.get("base-uri") != ["'none'"]:
            problems.append(f"frame-ancestors {policy.get('frame-ancestors')}, base-uri {policy.get('base-uri')}")
    for name, value in (
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ):
        if headers.get(name) != value:
            problems.append(f"{name}: {headers.get(name)}")
    hsts = headers.get("strict-transport-security", "")
    if bool(hsts) != secure or (secure and int(re.search(r"max-age=(\d+)", hsts).group(1)) < 31_536_000):  # type: ignore[union-attr]
        problems.append(f"strict-transport-security: {hsts or None}")
    return problems


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_every_page_sends_strict_security_headers_and_hsts_only_over_https(
    seeded: Seeded, tmp_path: Path, secure: bool
) -> None:
    scheme = "https" if secure else "http"
    with world_of(seeded, tmp_path, console_secure_cookie=secure, public_url=f"{scheme}://testserver") as world:
        table = probes(seeded)
        answers: list[tuple[str, httpx.Response]] = []

        def get(actor: str, path: str) -> None:
            answers.append(
                (f"GET {path} as {actor}", world.browser(actor, base_url=f"{scheme}://testserver").get(path))
            )

        for (method, path), probe in table.items():  # every page, and every answer of a public page
            on_console = path.startswith("/console") and not path.startswith("/console/static")
            if method == "GET" and path != PLOTLY_JS and (on_console or path.startswith(("/f/", "/u/"))):
                get("admin" if isinstance(POLICY[(method, path)], Staff) else "anonymous", probe.path)
        for actor, path in (("anonymous", "/console"), ("agent", "/console/ledger"), ("agent", "/console/nope"),
                            ("agent", "/console?origin=sideways"), ("anonymous", "/f/not-a-token"),
                            ("anonymous", "/u/not-a-token")):  # fmt: skip
            get(actor, path)  # a redirect to the login page, a refusal, nothing there, a bad query, bad links
        anonymous = world.browser(base_url=f"{scheme}://testserver")
        answers.append(("POST /f/", anonymous.post(seeded.feedback_path, data={"liked": "Kind people."})))
        answers.append(("POST /u/", anonymous.post(seeded.unsubscribe_path)))
        elsewhere = {"Origin": "https://evil.example"}
        answers.append(("POST /f/ from elsewhere", anonymous.post(seeded.feedback_path, data={}, headers=elsewhere)))
        for where, response in answers:
            assert strict_header_problems(response, secure=secure) == [], (where, response.status_code)
        assert len(answers) > 20

        # The cookies: the session's and the login form's nonce, never readable by script, Secure over HTTPS.
        client = world.browser(base_url=f"{scheme}://testserver")
        nonce = client.get("/console/login").headers["set-cookie"].lower()
        set_cookies = [v.lower() for k, v in log_in(client, "ana", PASSWORD).headers.multi_items() if k == "set-cookie"]
        # Over HTTPS the session's name has the __Host- prefix: Secure, path /, no Domain, so a sibling subdomain or
        # a page over plain HTTP can neither plant nor shadow it.
        name = "__host-amends_session=" if secure else "amends_session="
        session = next(cookie for cookie in set_cookies if cookie.startswith(name))
        assert "domain=" not in session
        for cookie, same_site, path in ((nonce, "strict", "/console/login"), (session, "lax", "/")):
            assert "httponly" in cookie
            assert f"samesite={same_site}" in cookie
            assert f"path={path};" in cookie + ";"
            assert ("; secure" in cookie) is secure
        if secure:  # and it is the one that signs in, and the one logout ends
            assert client.get("/console").status_code == 200
            ended = [v.lower() for k, v in client.post("/console/logout", data={"csrf": csrf_of(client.get(
                "/console").text)}).headers.multi_items() if k == "set-cookie"]  # fmt: skip
            assert any(cookie.startswith('__host-amends_session=""') for cookie in ended), ended
            assert client.get("/console", follow_redirects=False).status_code in (302, 303, 307)


# --- 7. signed links ---------------------------------------------------------------------------------------------


def changed_at(token: str, index: int) -> str:
    """The token with one character changed (to another of the URL-safe alphabet)."""
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


def test_a_changed_expired_or_foreign_link_opens_nothing_and_writes_nothing(world: World) -> None:
    links: Links = world.app.state.outreach.links
    now = datetime.now(UTC)
    token = unquote(world.seeded.feedback_path.removeprefix("/f/"))
    request_id = links.request_of(token, now=now).request_id
    unsubscribe = unquote(world.seeded.unsubscribe_path.removeprefix("/u/"))
    another = unquote(world.seeded.public_pages[0].removeprefix("/f/"))  # a link to another customer's request
    signature_at = token.rindex(".") + 1
    elsewhere = Links("another server's secret key, long enough to be one", "http://testserver")
    feedback = {
        "expired a second ago": links.feedback_token(request_id, "invoice:matrix", now - timedelta(seconds=1)),
        "a character of what it says changed": changed_at(token, 3),
        "a character of its signature changed": changed_at(token, signature_at + 2),
        "cut short": token[:-5],
        "another request's words under its signature": another.rsplit(".", 1)[0] + token[signature_at - 1 :],
        "signed with another server's key": elsewhere.feedback_token(request_id, "invoice:matrix", now + DAY),
        "for another interaction of the same request": links.feedback_token(request_id, "invoice:other", now + DAY),
        "for a request that does not exist": links.feedback_token(request_id + 1000, "invoice:matrix", now + DAY),
        "an unsubscribe link's token": unsubscribe,
    }
    unsubscribing = {
        "a character changed": changed_at(unsubscribe, 3),
        "signed with another server's key": elsewhere.unsubscribe_token(world.seeded.customers["page"]),
        "a feedback link's token": token,
    }
    client = world.browser()
    before = snapshot(world.db)
    for kind, tokens in (("f", feedback), ("u", unsubscribing)):
        for why, bad in tokens.items():
            path = f"/{kind}/{quote(bad, safe='')}"
            shown = client.get(path)
            assert shown.status_code == 404, (kind, why, shown.status_code)
            assert "This link does not work" in shown.text, (kind, why)
            assert client.post(path, data={"liked": "Overwritten."}).status_code == 404, (kind, why)
    assert changes(before, snapshot(world.db)) == []
    assert client.get(f"/f/{quote(token, safe='')}").status_code == 200  # the link itself still works


def test_a_link_used_again_changes_one_answer_and_one_opt_out_as_the_docs_say(world: World) -> None:
    path, client = world.seeded.feedback_path, world.browser()
    answers, opt_outs = tables.feedback, tables.opt_outs

    def stored() -> list[Any]:
        with world.db.engine.connect() as connection:
            return list(connection.execute(sa.select(answers).where(answers.c.channel == "page")).all())

    for _ in range(2):  # the same post twice (a reload, a replay): still one answer
        assert client.post(path, data={"liked": "Friendly.", "rating": "4"}).status_code == 303
    assert client.post(path, data={"liked": "Friendly, and quick.", "rating": "5"}).status_code == 303
    [answer] = [row for row in stored() if row.liked.startswith("Friendly")]
    assert (answer.liked, answer.rating) == ("Friendly, and quick.", 5)
    with world.db.engine.begin() as connection:  # a day later the answer may no longer change
        connection.execute(sa.update(answers).where(answers.c.id == answer.id).values(editable_until=datetime.now(UTC)))
    late = client.post(path, data={"liked": "Rewritten much later.", "rating": "1"})
    assert late.status_code == 409
    assert "Friendly, and quick." in late.text
    [kept] = [row for row in stored() if row.id == answer.id]
    assert (kept.liked, kept.rating) == ("Friendly, and quick.", 5)

    for _ in range(2):  # unsubscribing twice: one opt-out, kept from the first time
        assert client.post(world.seeded.unsubscribe_path).status_code == 200
    with world.db.engine.connect() as connection:
        rows = connection.execute(sa.select(opt_outs).where(opt_outs.c.customer_id == world.seeded.customers["page"]))
        assert len(rows.all()) == 1


# --- 8. guessing passwords ---------------------------------------------------------------------------------------


def test_guessing_passwords_is_limited_per_address_and_per_name_and_every_attempt_is_audited(
    seeded: Seeded, tmp_path: Path
) -> None:
    with world_of(seeded, tmp_path, console_login_rate_limit="3/minute") as world:

        def attempt(address: str, login: str, password: str = "a wrong guess, surely", **headers: str) -> int:
            return log_in(world.browser(address=address), login, password, **headers).status_code

        # One name from many addresses: the name is what is guessed, and the right password waits too.
        assert [attempt(f"203.0.113.{n}", "boss") for n in range(1, 5)] == [401, 401, 401, 429]
        assert attempt("203.0.113.50", "boss", PASSWORD) == 429
        assert attempt("203.0.113.51", " BOSS ", PASSWORD) == 429  # the same name, written otherwise
        # One address trying many names; a forwarded-for header the client wrote itself changes nothing.
        assert [attempt("198.51.100.7", name) for name in ("ana", "lee", "root", "otto")] == [401, 401, 401, 429]
        assert attempt("198.51.100.7", "otto", PASSWORD) == 429
        assert attempt("198.51.100.7", "otto", PASSWORD, **{"X-Forwarded-For": "192.0.2.1"}) == 429
        # Anyone else gets in.
        assert attempt("192.0.2.200", "otto", PASSWORD) == 303

        with world.db.engine.connect() as connection:
            log = connection.execute(sa.select(tables.audit_log).order_by(tables.audit_log.c.id)).all()
        unknown = next(row.target for row in log if row.origin == "203.0.113.51")
        assert unknown.startswith("login:unknown:")
        tried = [(row.action, row.origin, row.target) for row in log
                 if row.action.startswith("console.login") and row.origin != "testclient"]  # fmt: skip
        assert tried == [
            *(("console.login_failed", f"203.0.113.{n}", "login:boss") for n in range(1, 4)),
            ("console.login_limited", "203.0.113.4", "login:boss"),
            ("console.login_limited", "203.0.113.50", "login:boss"),
            ("console.login_limited", "203.0.113.51", unknown),  # BOSS is nobody's id (ids are exact)
            *(("console.login_failed", "198.51.100.7", f"login:{name}") for name in ("ana", "lee", "root")),
            *(("console.login_limited", "198.51.100.7", "login:otto") for _ in range(3)),
            ("console.login", "192.0.2.200", "staff:otto"),
        ]
        assert not any(PASSWORD in repr(tuple(row)) or "wrong guess" in repr(tuple(row)) for row in log)

        # A name that is nobody's (someone typed a password into it?) is kept only as a keyed hash: the same name
        # gives the same target, so a guessing run still shows, but the audit log, never erased, never holds it.
        assert attempt("192.0.2.201", "my secret passphrase") == 401
        assert attempt("192.0.2.202", " My Secret Passphrase ") == 401
        with world.db.engine.connect() as connection:
            failed = sa.select(tables.audit_log.c.target).where(tables.audit_log.c.action == "console.login_failed")
            later = connection.execute(failed.where(tables.audit_log.c.id > log[-1].id)).scalars().all()
        assert len(later) == 2
        assert later[0] == later[1]
        assert later[0].startswith("login:unknown:")
        assert later[0] != unknown
        assert "passphrase" not in later[0].lower()


def test_every_server_over_one_database_counts_the_same_failed_logins(seeded: Seeded, tmp_path: Path) -> None:
    """Two servers behind one address (two processes, or two machines, over one database) share the count: guesses
    spread over both are refused when they add up to the limit, and the table keeps no name in clear."""
    with world_of(seeded, tmp_path, console_login_rate_limit="3/minute") as world:
        second = create_app(world_settings(world.db, seeded.rules_dir, console_login_rate_limit="3/minute"), world.db)
        with TestClient(second):  # started, like the first

            def attempt(app: Any, address: str, password: str = "a wrong guess, surely") -> int:
                return log_in(browser(app, address=address), "boss", password).status_code

            assert attempt(world.app, "203.0.113.1") == 401
            assert attempt(second, "203.0.113.2") == 401
            assert attempt(world.app, "203.0.113.3") == 401
            assert attempt(second, "203.0.113.4", PASSWORD) == 429  # the name's third failure was on the other one
            assert attempt(world.app, "203.0.113.5", PASSWORD) == 429
        with world.db.engine.connect() as connection:
            kept = connection.execute(sa.select(tables.login_failures)).all()
        assert [row.address for row in kept] == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        assert len({row.name_key for row in kept}) == 1
        assert "boss" not in repr(kept)
