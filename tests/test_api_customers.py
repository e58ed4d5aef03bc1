"""GET /v1/customers/{id} and its timeline; /healthz and /readyz."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from amends.access import Scope
from amends.store import Database
from amends.web import create_app
from tests.conftest import an_event, new_key, settings_for


def send(client: TestClient, *events: dict[str, object]) -> None:
    assert client.post("/v1/events", json=list(events)).status_code == 200


def test_a_customer_is_summarised(client: TestClient) -> None:
    send(
        client,
        an_event(1, subject="C-9", time="2026-05-01T10:00:00Z"),
        an_event(2, subject="C-9", time="2026-05-03T10:00:00+02:00"),
    )
    body = client.get("/v1/customers/C-9").json()
    assert body["id"] == "C-9"
    assert body["event_count"] == 2
    assert body["first_event_at"].startswith("2026-05-01T10:00:00")
    assert body["last_event_at"].startswith("2026-05-03T08:00:00")


def test_an_unknown_customer_is_a_404(client: TestClient) -> None:
    response = client.get("/v1/customers/nobody")
    assert response.status_code == 404
    assert client.get("/v1/customers/nobody/timeline").status_code == 404


def test_the_timeline_is_newest_first_a_page_at_a_time(client: TestClient) -> None:
    # Arrival order differs from event time: the timeline follows event time.
    times = ["2026-05-03", "2026-05-01", "2026-05-05", "2026-05-02", "2026-05-04"]
    send(client, *(an_event(n, subject="C-1", time=f"{t}T09:00:00Z") for n, t in enumerate(times)))
    seen: list[str] = []
    url: str | None = "/v1/customers/C-1/timeline?limit=2"
    pages = 0
    while url is not None:
        page = client.get(url).json()
        seen += [entry["event"]["time"][:10] for entry in page["events"]]
        url = page["next"]
        pages += 1
    assert seen == sorted(times, reverse=True)
    assert pages == 3


def test_timeline_entries_are_cloudevents(client: TestClient) -> None:
    send(client, an_event(1, subject="C-1", traceparent="00-aa-bb-01"))
    [entry] = client.get("/v1/customers/C-1/timeline").json()["events"]
    assert entry["event"]["specversion"] == "1.0"
    assert entry["event"]["traceparent"] == "00-aa-bb-01"
    assert entry["event"]["data"] == {"order_id": "O-1", "total": 42.5}
    assert entry["event"]["time"] == "2026-05-01T08:00:00Z"


def test_a_forged_cursor_is_refused(client: TestClient) -> None:
    send(client, an_event(1, subject="C-1"))
    response = client.get("/v1/customers/C-1/timeline?cursor=not-a-cursor")
    assert response.status_code == 422
    assert response.json()["field"] == "cursor"
    assert client.get("/v1/customers/C-1/timeline?limit=0").status_code == 422


def test_reading_customers_needs_its_scope(db: Database) -> None:
    writer = new_key(db, "writer", [Scope.EVENTS_WRITE])
    with TestClient(create_app(settings_for(db), db), headers={"Authorization": f"Bearer {writer}"}) as client:
        assert client.get("/v1/customers/C-1").status_code == 403


def test_ready_when_the_schema_is_current(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_not_ready_before_init(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(settings_for(db), db)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "amends init" in response.json()["reason"]


def test_the_api_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/events", "/v1/customers/{customer_id}", "/v1/customers/{customer_id}/timeline"} <= set(spec["paths"])
    content = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert "application/x-ndjson" in content
    page = client.get("/docs")
    assert page.status_code == 200
    # The docs page works offline: its script and styles are served by amends itself.
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page.text
    assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/swagger-ui/swagger-ui.css").status_code == 200
