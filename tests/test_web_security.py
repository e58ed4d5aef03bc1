"""The console and the public pages as an attacker meets them, through HTTP: who may use every route (a matrix
generated from the app's own routes: a route nobody declared fails it), script in every field that is shown,
forged forms, open redirects, session fixation and expiry, the security headers, signed links changed, expired or
replayed, and guessing passwords (docs/console.md, docs/feedback.md).

One world is built once per module, with a payload in every field staff and customers can fill, and each test
gets its own copy of its SQLite database.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
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
    return f"{where}<script>alert(1)</script>\"><img src=x onerror=alert(1)><a href='javascript:alert(1)'>{{{{7*'7'}}}}"


SHORT = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'  # for fields of at most 100 characters
RUN_TEMPLATE = "7777777"  # what {{7*'7'}} becomes if anything renders what was typed as a template
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
    ("GET", "/console/static"): OPEN,
    ("GET", PLOTLY_JS): OPEN,
    ("GET", "/f/{token}"): OPEN,
    ("POST", "/f/{token}"): OPEN,
    ("GET", "/u/{token}"): OPEN,
    ("POST", "/u/{token}"): OPEN,
    ("GET", "/console/login"): OPEN,
    ("POST", "/console/login"): OPEN,
    ("POST", "/console/logout"): STAFF,
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
    """What the world holds: each id a test needs, and each person's session and key."""

    path: Path
    rules_dir: Path
    people: dict[str, Signed]
    integration: str
    cases: dict[str, int]
    customers: dict[str, str]
    approval: int
    entry: int
    feedback: int
    suggestion: int
    feedback_path: str
    xss_feedback_path: str
    unsubscribe_path: str
    xss_unsubscribe_path: str
    shown: tuple[str, ...]  # the fields a payload was put in


# Matrix cases, one per action on a case: each is its agent's own case, in the agent's team.
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
        company_name=payload("company"),
        public_url="http://testserver",
        **overrides,
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


def send_events(client: TestClient, key: str, app: Any, events: list[dict[str, object]]) -> None:
    tick = {**arrival(990, "C-tick", 0, day=31), "type": "clock.tick"}
    response = client.post("/v1/events", json=[*events, tick], headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    app.state.recovery.tick()


def customer_events(customer: str, number: int, text: str = "") -> list[dict[str, object]]:
    """A customer's profile, booking and a flight three hours late: two incidents, one case."""
    data = {"name": f"Alex {text}".strip(), "email": f"c{number}@example.com", "language": "en"}
    late = arrival(number, customer, 200, booking_ref=f"BK{number}{text}")
    late["id"] = f"f-{number}"
    late["data"] = {**late["data"], "flight_no": f"AA{number}{text}"}  # type: ignore[dict-item]
    return [
        {**profile(customer, **data), "id": f"p-{number}"},
        {**booking(1, customer, 300.0), "id": f"b-{number}"},
        late,
    ]


def csrf_ok(client: TestClient, path: str, form: Mapping[str, str], csrf: str) -> httpx.Response:
    response = client.post(path, data={"csrf": csrf, **form})
    assert response.status_code == 303, (path, response.status_code, response.text[-2000:])
    return response


def seed(base: Path) -> Seeded:
    """Build the world: staff of every role, signed in; a case per action of the matrix; and, through the API
    and the console as people use them, a payload in every field that is ever shown."""
    rules_dir = base / "rules"
    rules_dir.mkdir()
    (rules_dir / "xss.yaml").write_text(XSS_RULE)
    db = Database(f"sqlite:///{base / 'world.db'}")
    upgrade(db)
    now = datetime.now(UTC)
    with db.unit_of_work(writes=True) as uow:
        for person in PEOPLE.values():
            add_staff(uow, person.login, name=person.name, role=person.role, team=person.team,
                      email=f"{person.login}@example.com", now=now)  # fmt: skip
            set_password(uow, person.login, PASSWORD, now=now)
        uow.commit()
    app = create_app(world_settings(db, rules_dir), db)
    shown: list[str] = ["company", "staff-name", "rule-description"]
    with TestClient(app) as client:
        people: dict[str, Signed] = {}
        for actor, person in PEOPLE.items():
            own = browser(app)
            assert log_in(own, person.login, PASSWORD).status_code == 303
            token = own.cookies["amends_session"]
            with db.unit_of_work(writes=True) as uow:
                _key, text = create_staff_key(uow, person.login, now=now)
                uow.commit()
            people[actor] = Signed(token, csrf_of(own.get("/console").text), text)
        with db.unit_of_work(writes=True) as uow:
            update_staff(uow, "dee", active=False)  # ends dee's session; the key is refused from now on
            uow.commit()
        integration = new_key(db, "integration", list(Scope))
        auth = {"Authorization": f"Bearer {integration}"}

        customers = {action: f"M-{action}" for action in CASE_ACTIONS}
        customers["xss"] = XSS_CUSTOMER
        events = [e for n, action in enumerate(CASE_ACTIONS, 1) for e in customer_events(customers[action], n)]
        events += customer_events(XSS_CUSTOMER, 99, payload("event-data"))
        send_events(client, integration, app, events)
        shown += ["event-data"]
        with db.unit_of_work(writes=True) as uow:
            cases = {
                action: int(uow.execute(sa.select(tables.cases.c.id).where(tables.cases.c.customer_id == c))
                            .scalar_one())
                for action, c in customers.items()
            }  # fmt: skip
            ana = get_staff(uow, "ana")
            for case_id in cases.values():  # each matrix case is the agent's own
                case = load_case(uow, case_id)
                if case.owner_id != "ana":
                    set_owner(uow, case, ana, reason="the matrix's", by=SYSTEM, now=now)
            uow.commit()

        def as_(actor: str) -> TestClient:
            own = browser(app)
            own.cookies.set("amends_session", people[actor].token)
            return own

        ana_browser, boss = as_("agent"), as_("manager")
        agent_csrf, boss_csrf = people["agent"].csrf, people["manager"].csrf

        def on_case(action: str, verb: str, form: Mapping[str, str], who: TestClient = ana_browser) -> None:
            csrf = agent_csrf if who is ana_browser else people["lead"].csrf
            csrf_ok(who, f"/console/cases/{cases[action]}/{verb}", form, csrf)

        for action in ("close", "reopen"):
            on_case(action, "resolve", {"resolution": "Rebooked and refunded."})
        on_case("approval", "remedy", {"kind": "voucher", "amount": "150", "action": "request_approval"})
        on_case("denied", "remedy", {"kind": "voucher", "amount": "150", "action": "request_approval",
                                     "note": payload("approval-note")})  # fmt: skip
        on_case("ledger", "remedy", {"kind": "voucher", "amount": "20", "action": "grant"})
        # What staff write on a case: the apology, its note, the remedy's note, the resolution, the reason to reopen
        # and the reason of a handoff.
        on_case("xss", "draft", {"text": payload("draft")})
        on_case("xss", "apology", {"text": payload("apology"), "note": payload("contact-note")})
        on_case("xss", "remedy", {"kind": "voucher", "amount": "20", "action": "grant", "note": payload("remedy-note")})
        on_case("xss", "resolve", {"resolution": payload("resolution")})
        on_case("xss", "reopen", {"reason": payload("reopen-reason")})
        lee = as_("lead")
        on_case("xss", "assign", {"to": "lee", "reason": payload("handoff-reason")}, who=lee)
        shown += ["approval-note", "draft", "apology", "contact-note", "remedy-note", "resolution", "reopen-reason",
                  "handoff-reason"]  # fmt: skip

        with db.unit_of_work() as uow:
            approvals = dict(uow.execute(sa.select(tables.approvals.c.case_id, tables.approvals.c.id)).all())
            entries = dict(uow.execute(sa.select(tables.ledger.c.case_id, tables.ledger.c.id)).all())
        csrf_ok(boss, f"/console/approvals/{approvals[cases['denied']]}",
                {"decision": "deny", "reason": payload("approval-reason")}, boss_csrf)  # fmt: skip
        csrf_ok(boss, f"/console/ledger/{entries[cases['xss']]}/reverse", {"reason": payload("reversal")}, boss_csrf)
        shown += ["approval-reason"]

        # What customers write, through the API: a complaint, feedback with its author, a suggestion.
        complaint = {"source": "helpdesk", "id": "cx-1", "customer": XSS_CUSTOMER, "channel": "email",
                     "text": payload("complaint"), "reference": payload("complaint-ref")}  # fmt: skip
        assert client.post("/v1/complaints", json=complaint, headers=auth).status_code in (200, 201)
        said = {
            "source": "mailbox",
            "id": "fb-xss",
            "channel": "email",
            "customer": XSS_CUSTOMER,
            "author": payload("author"),
            "text": "Nobody helped me, my flight was late. " + payload("feedback"),
        }
        xss_feedback = client.post("/v1/feedback", json=said, headers=auth).json()["id"]
        idea = {"source": "mailbox", "id": "fb-idea", "channel": "email", "customer": customers["page"],
                "text": "It would be great if you could add an option to choose my seat online. " + SHORT}  # fmt: skip
        assert client.post("/v1/feedback", json=idea, headers=auth).status_code == 201
        thanks = {"source": "mailbox", "id": "fb-thanks", "channel": "email", "customer": customers["page"],
                  "text": "Thank you, Maria at the desk was wonderful and so helpful!"}  # fmt: skip
        feedback_id = client.post("/v1/feedback", json=thanks, headers=auth).json()["id"]
        shown += ["complaint", "author", "feedback"]
        csrf_ok(ana_browser, f"/console/feedback/{xss_feedback}/reply",
                {"view": "all", "text": payload("reply"), "channel": "phone"}, agent_csrf)  # fmt: skip
        with db.unit_of_work() as uow:
            suggestion_id = int(uow.execute(sa.select(tables.suggestions.c.id)).scalar_one())
        csrf_ok(boss, f"/console/feedback/suggestions/{suggestion_id}",
                {"status": "planned", "note": payload("suggestion-note")}, boss_csrf)  # fmt: skip
        shown += ["reply", "suggestion-note"]

        # The public pages: a feedback request whose reference the customer reads, answered with a payload.
        def request_path(interaction: str, customer: str, **body: str) -> str:
            made = client.post("/v1/feedback-requests", json={"customer": customer, "interaction": interaction,
                                                              **body}, headers=auth)  # fmt: skip
            assert made.status_code == 201, made.text
            return str(made.json()["url"]).removeprefix("http://testserver")

        feedback_path = request_path("invoice:matrix", customers["page"])
        xss_feedback_path = request_path("invoice:xss", XSS_CUSTOMER, reference=payload("reference"))
        answered = client.post(xss_feedback_path, data={"liked": payload("answer"), "rating": "2"})
        assert answered.status_code == 200, answered.text  # followed to the page that shows the answer
        shown += ["reference", "answer"]
        links: Links = app.state.outreach.links
        unsubscribe_path = links.unsubscribe_url(customers["page"]).removeprefix("http://testserver")
        xss_unsubscribe_path = links.unsubscribe_url(XSS_CUSTOMER).removeprefix("http://testserver")
    db.dispose()
    return Seeded(
        base / "world.db", rules_dir, people, integration, cases, customers, approvals[cases["approval"]],
        entries[cases["ledger"]], feedback_id, suggestion_id, feedback_path, xss_feedback_path, unsubscribe_path,
        xss_unsubscribe_path, tuple(shown),
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
        ("GET", "/console/static"): Probe("/console/static/console.css"),
        ("GET", PLOTLY_JS): Probe(PLOTLY_JS),
        ("GET", "/f/{token}"): Probe(seeded.feedback_path),
        ("POST", "/f/{token}"): Probe(seeded.feedback_path, {"liked": "Quick and kind.", "rating": "5"}),
        ("GET", "/u/{token}"): Probe(seeded.unsubscribe_path),
        ("POST", "/u/{token}"): Probe(seeded.unsubscribe_path, {}),
        ("GET", "/console/login"): Probe("/console/login"),
        ("POST", "/console/login"): Probe("/console/login", ok=(401,), send=wrong_password),
        ("POST", "/console/logout"): Probe("/console/logout", {}),
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
        probe = table.get((method, path)) or Probe(filled(path), ok=(200, 201, 202, 204, 303, 409, 422))
        actors = ACTORS
        if isinstance(policy, Open):
            actors = ("anonymous",)
        elif isinstance(policy, Key) and policy.least is None:
            actors = ("anonymous", "deactivated")  # what each role's key may do is the API tests'
        expected = {actor: policy.expect(actor) for actor in actors}
        refused_first = sorted(actors, key=lambda a: (expected[a] is Outcome.OK, ROLE_ORDER.index(a) if a in
                                                      ROLE_ORDER else 0))  # fmt: skip
        served = False
        for actor in refused_first:
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
