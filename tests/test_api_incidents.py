"""Detection through the API: events sent to /v1/events open incidents, read at /v1/incidents; the rules
come from the settings, reload when a file changes, and a broken file never replaces the running set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from amends.access import Scope
from amends.detect import RuleSetError
from amends.detect.service import Detection
from amends.store import Database
from amends.web import create_app
from tests.conftest import new_key, settings_for

RULES = """\
rules:
  - id: long-delay
    kind: match
    on: flight.arrived
    where: {data.delay_minutes: {gte: 180}}
    severity: {by: data.delay_minutes, steps: [[180, 2], [360, 3]]}
    playbook: delay
  - id: contact-storm
    kind: count
    on: support.contact
    at_least: 2
    within: 7d
"""


def flight(number: int, delay: int, subject: str = "C-1", day: int = 1) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"f-{number}",
        "source": "https://air.example",
        "type": "flight.arrived",
        "time": f"2025-03-{day:02d}T10:00:00Z",
        "subject": subject,
        "data": {"flight": f"AA{number}", "delay_minutes": delay},
    }


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "air.yaml").write_text(RULES)
    return directory


@pytest.fixture
def api(db: Database, rules_dir: Path) -> Iterator[TestClient]:
    settings = settings_for(db, rules_dir=rules_dir, detect_clock="events", detect_allowed_lateness="0s")
    with TestClient(create_app(settings, db)) as client:
        client.headers["Authorization"] = f"Bearer {new_key(db)}"
        yield client


def test_events_sent_open_incidents_that_can_be_listed_and_read(api: TestClient) -> None:
    sent = [flight(1, 400, "C-1", day=1), flight(2, 30, "C-2", day=2), flight(3, 200, "C-3", day=3)]
    sent.append(flight(4, 0, "C-9", day=20))  # moves the watermark past the others
    assert api.post("/v1/events", json=sent).status_code == 200

    body = api.get("/v1/incidents").json()
    assert [i["customer_id"] for i in body["incidents"]] == ["C-3", "C-1"]  # newest first
    assert [i["severity"] for i in body["incidents"]] == [2, 3]
    first = body["incidents"][1]
    assert first["facts"]["data"] == {"flight": "AA1", "delay_minutes": 400}
    assert first["playbook"] == "delay"
    assert first["failure_at"].startswith("2025-03-01T10:00:00")
    assert api.get(f"/v1/incidents/{first['id']}").json() == first
    assert api.get("/v1/incidents/999999").status_code == 404


def test_incidents_are_filtered_and_paged(api: TestClient) -> None:
    sent = [flight(n, 300, f"C-{n % 2}", day=n) for n in range(1, 8)] + [flight(99, 0, day=28)]
    assert api.post("/v1/events", json=sent).status_code == 200
    assert len(api.get("/v1/incidents", params={"customer": "C-1"}).json()["incidents"]) == 4
    assert api.get("/v1/incidents", params={"rule": "contact-storm"}).json()["incidents"] == []
    assert len(api.get("/v1/incidents", params={"status": "open"}).json()["incidents"]) == 7
    window = {"since": "2025-03-02T00:00:00Z", "until": "2025-03-04T10:00:00Z"}
    assert [i["facts"]["data"]["flight"] for i in api.get("/v1/incidents", params=window).json()["incidents"]] == [
        "AA3",
        "AA2",
    ]
    seen, url = [], "/v1/incidents?limit=3"
    while url:
        page = api.get(url).json()
        seen += [i["id"] for i in page["incidents"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "closed"}, "status"),
        ({"since": "2025-03-01T00:00:00"}, "since"),  # no offset: ambiguous
        ({"since": "2025-03-05T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"limit": "0"}, "limit"),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(api: TestClient, params: dict[str, str], field: str) -> None:
    response = api.get("/v1/incidents", params=params)
    assert response.status_code == 422
    assert field in response.text


def test_reading_incidents_needs_its_scope(db: Database, api: TestClient) -> None:
    writer = new_key(db, "writer", [Scope.EVENTS_WRITE])
    response = api.get("/v1/incidents", headers={"Authorization": f"Bearer {writer}"})
    assert response.status_code == 403


def test_a_server_does_not_start_on_broken_rules(db: Database, rules_dir: Path) -> None:
    (rules_dir / "broken.yaml").write_text("rules:\n  - id: x\n    kind: nonsense\n")
    with pytest.raises(RuleSetError) as raised:
        create_app(settings_for(db, rules_dir=rules_dir), db)
    assert "broken.yaml" in str(raised.value)


def test_changed_rules_are_picked_up_and_broken_ones_never_replace_the_running_set(
    db: Database, rules_dir: Path
) -> None:
    detection = Detection.from_settings(db, settings_for(db, rules_dir=rules_dir, detect_clock="events"))
    assert [rule.common.id for rule in detection.detector.rules] == ["long-delay", "contact-storm"]
    (rules_dir / "air.yaml").write_text(RULES.replace("id: contact-storm", "id: contact-storm\n    kind: count\n"))
    _touch_later(rules_dir / "air.yaml")
    detection.tick()
    assert [rule.common.id for rule in detection.detector.rules] == ["long-delay", "contact-storm"]
    assert detection.source.last_error is not None
    assert "air.yaml" in str(detection.source.last_error)

    (rules_dir / "air.yaml").write_text(RULES.replace("at_least: 2", "at_least: 5"))
    _touch_later(rules_dir / "air.yaml")
    detection.tick()
    assert detection.source.last_error is None
    storm = detection.detector.rules.get("contact-storm")
    assert storm is not None
    assert getattr(storm, "at_least", None) == 5


def _touch_later(path: Path) -> None:
    # A change within the file system's timestamp resolution could go unseen; move the mtime on.
    later = path.stat().st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(later, later))
