"""Fuzzing the /v1 API from its own OpenAPI schema with schemathesis: with an admin's key, with an integration's
key holding every scope, and with no key at all.

Every operation whose path starts with /v1 is driven through schemathesis's phases (the schema's examples, its
coverage cases, then Hypothesis's generated requests, valid and invalid), against an app over SQLite that holds
a case with incidents, a grant, an approval request, messages, a card, feedback, a feedback request and a reply,
whose ids the schema's path parameters carry as examples: requests reach real objects, not only 404s. Each answer
must not be a 5xx, must have a status, content type, headers and body the schema declares for it, and a request
the schema forbids must be refused (4xx). Without a key, every request must be refused, and nothing stored changes.

The run is deterministic (derandomised, no example database) and bounded for CI: AMENDS_FUZZ_EXAMPLES generated
requests per operation, valid and invalid (default 8), besides the examples and coverage cases. A longer run:

    AMENDS_FUZZ_EXAMPLES=200 .venv/bin/pytest -q -p no:cacheprovider tests/test_fuzz_api.py
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.pytest.lazy import get_all_tests
from schemathesis.python import asgi
from schemathesis.specs.openapi.schemas import OpenApiSchema

from amends.access import Scope
from amends.recover.roles import Role
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import count_rows, new_key, settings_for
from tests.test_cards import a_card, queued
from tests.test_recovery import World, arrival, booking, profile, staff_key

CI_EXAMPLES = 8
EXAMPLES = int(os.environ.get("AMENDS_FUZZ_EXAMPLES", CI_EXAMPLES))

# A longer run takes the time it needs, not the suite's 300 s a test (a request that hangs still fails: schemathesis
# gives each 10 s).
pytestmark = [pytest.mark.timeout(0)] if EXAMPLES > CI_EXAMPLES else []

# A request the schema forbids must be refused with one of these. 413 is the answer to a batch of more than
# 10,000 events (the schema's maxItems); 5xx is never a refusal (not_a_server_error fails it anyway).
REFUSALS = [400, 401, 403, 404, 405, 409, 413, 415, 422]

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.ignored_auth,
]


@dataclass(frozen=True)
class Seeded:
    app: FastAPI
    keys: dict[str, str]  # the most powerful key of each kind: "admin" (a staff member's), "integration"
    examples: dict[str, str]  # a real value for each path parameter, by name


def a_seeded_app(db: Database) -> Seeded:
    """An app over `db` with one of each thing a /v1 path names, made through the API as a user would."""
    keys = {
        "boss": staff_key(db, "boss", Role.ADMIN),  # World reads cases as "boss"
        "ana": staff_key(db, "ana", Role.AGENT, "air"),
        "integration": new_key(db, "integration", [Scope.EVENTS_WRITE, Scope.COMPLAINTS_WRITE]),
        "every scope": new_key(db, "every scope", list(Scope)),
    }
    settings = settings_for(
        db, rule_packs=("airline",), detect_clock="events", detect_allowed_lateness="0s", assign_teams={"air-*": "air"}
    )
    app = create_app(settings, db)
    with TestClient(app) as client:
        world = World(client, db, app.state.recovery, keys)
        world.send(profile("C-1"), booking(1, "C-1", 2500.0), arrival(1, "C-1", 420), arrival(2, "C-1", 420, day=22))
        detail = world.case_of("C-1")
        case = f"/v1/cases/{detail['case']['id']}"
        first, second = (f"incident-{incident['id']}" for incident in detail["incidents"])

        def post(path: str, body: dict[str, object] | None = None, who: str = "boss", status: int = 200) -> Any:
            response = client.post(path, json=body, headers=world.as_(who))
            assert response.status_code == status, response.text
            return response.json()

        post(f"{case}/acknowledge", who="ana")
        post(f"{case}/steps/empathise/complete", {"channel": "email"}, who="ana")
        entry = post(f"{case}/remedies", {"kind": "miles", "amount": "6000", "slot": first}, who="ana", status=201)
        asked = {"kind": "miles", "amount": "90000", "slot": second}
        approval = post(f"{case}/approvals", asked, who="ana", status=202)
        complaint = {"source": "helpdesk", "id": "T-1", "customer": "C-2", "channel": "email", "text": "Lost bag."}
        post("/v1/complaints", complaint, who="integration", status=201)
        said = {"source": "mail", "id": "m-1", "channel": "email", "customer": "C-1", "text": "The meal was cold."}
        feedback = post("/v1/feedback", said, status=201)
        asking = post("/v1/feedback-requests", {"customer": "C-1", "interaction": "booking:BK1"}, status=201)
        reply = post("/v1/inbound/email/postmark", {"From": "c-1@example.com", "TextBody": "Thank you."})
        message = client.get("/v1/messages", headers=world.as_("boss")).json()["messages"][0]
    [card] = queued(db, a_card(int(detail["case"]["id"]), customer_id="C-1"))
    examples = {
        "customer_id": "C-1",
        "incident_id": str(detail["incidents"][0]["id"]),
        "case_id": str(detail["case"]["id"]),
        "kind": "empathise",
        "approval_id": str(approval["id"]),
        "entry_id": str(entry["id"]),
        "staff_id": "ana",
        "message_id": str(message["id"]),
        "task_id": str(card.id),
        "provider": "postmark",
        "reply_id": str(reply["id"]),
        "feedback_id": str(feedback["id"]),
        "request_id": str(asking["id"]),
    }
    return Seeded(app, {"admin": keys["boss"], "integration": keys["every scope"]}, examples)


@pytest.fixture
def seeded(db: Database) -> Iterator[Seeded]:
    yield a_seeded_app(db)
    asgi.shutdown_lifespans()  # schemathesis keeps each app it called started until told


def v1_schema(seeded: Seeded, headers: dict[str, str]) -> OpenApiSchema:
    """The app's own schema, limited to /v1, its path parameters given the seeded ids as examples."""
    spec = copy.deepcopy(seeded.app.openapi())
    for operations in spec["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] in seeded.examples:
                    parameter["schema"]["examples"] = [seeded.examples[parameter["name"]]]
    config = schemathesis.Config.from_dict(
        {
            "headers": headers,
            "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},  # each request stands alone; the seed is the state
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        }
    )
    schema = schemathesis.openapi.from_dict(spec, config=config)
    schema.app = seeded.app
    return schema.include(path_regex=r"^/v1/")


def fuzz(schema: OpenApiSchema, send: Callable[[schemathesis.Case], None], subtests: pytest.Subtests) -> None:
    """Run schemathesis's test of every /v1 operation, each reported as a subtest.

    schemathesis.pytest.from_fixture would do this, but its runner sets a private attribute pytest 9 no longer has;
    its builder of the operation tests (the same phases and settings) works."""
    fuzzed = set()
    for built in get_all_tests(schema=schema, test_func=send, settings=None, given_kwargs=None):
        operation, test = built.ok()  # an operation schemathesis cannot read fails here
        fuzzed.add(operation.label)
        with subtests.test(msg=operation.label):
            test()
    paths = schema.raw_schema["paths"].items()  # the app's own: every /v1 operation it has
    assert fuzzed == {
        f"{method.upper()} {path}" for path, methods in paths if path.startswith("/v1/") for method in methods
    }


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", ["admin", "integration"])
def test_every_v1_operation_answers_as_its_schema_says(seeded: Seeded, key: str, subtests: pytest.Subtests) -> None:
    def send(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    fuzz(v1_schema(seeded, {"Authorization": f"Bearer {seeded.keys[key]}"}), send, subtests)


def refused_before_anything(
    _ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Without a valid key a /v1 operation does nothing: 401 with a Bearer challenge; a request the schema forbids
    anyway may also get 400 (a body FastAPI cannot read, read before the key), or 404 or 405 (a path parameter
    that breaks the path, so that it names no operation)."""
    forbidden = case.meta is not None and case.meta.generation.mode.is_negative
    refusals = {400, 401, 404, 405} if forbidden else {401}
    assert response.status_code in refusals, f"{response.status_code} without a valid key; expected {refusals}"
    if response.status_code == 401:
        challenge = response.headers.get("www-authenticate", [""])[0]
        assert challenge.startswith("Bearer") or "Bearer" in challenge.split(", "), f"challenge: {challenge!r}"


def stored(db: Database) -> dict[str, int]:
    return {table.name: count_rows(db, table.name) for table in tables.metadata.sorted_tables}


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_no_v1_operation_does_anything_without_a_key(db: Database, seeded: Seeded, subtests: pytest.Subtests) -> None:
    def send(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS, additional_checks=[refused_before_anything])

    before = stored(db)
    fuzz(v1_schema(seeded, {}), send, subtests)
    assert stored(db) == before


# What fuzzing found, each now refused in the error body: before, the first was a 500 (the id overflowed the
# database driver), the next three were taken as 1970, false and 2, and the last two answered FastAPI's
# {"detail": ...} (a 422 for the body that is not JSON).
@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/v1/cases/9223372036854775808", None, 422, "case_id"),
        ("GET", "/v1/incidents?since=0", None, 422, "since"),
        ("PATCH", "/v1/staff/ana", {"active": 0}, 422, "active"),
        ("POST", "/v1/suggestions/1/merge", {"into": "2"}, 422, "into"),
        ("POST", "/v1/complaints", b'{"source": ', 400, "body"),
        ("GET", "/v1/nowhere", None, 404, None),
    ],
)
def test_what_fuzzing_found_is_refused_in_the_error_body(
    client: TestClient, method: str, path: str, body: object, status: int, field: str | None
) -> None:
    if isinstance(body, bytes):
        response = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["field"] == field
    assert {"error", "reason"} <= set(answer)


def test_the_largest_id_a_database_key_holds_is_looked_up(client: TestClient) -> None:
    assert client.get("/v1/cases/9223372036854775807").status_code == 404


def test_every_v1_operation_declares_the_errors_it_may_answer_with_their_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    v1 = [operation for path, item in spec["paths"].items() if path.startswith("/v1/") for operation in item.values()]
    assert len(v1) > 60
    for operation in v1:
        for status in ("401", "403", "503"):
            assert operation["responses"][status]["content"]["application/json"]["schema"] == error
        assert error["$ref"] in str(operation["responses"]["422"])  # POST /v1/events: or its IngestResult
    assert "HTTPValidationError" not in spec["components"]["schemas"]
