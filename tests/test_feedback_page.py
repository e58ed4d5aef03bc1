"""The public feedback page and /v1/feedback-requests through the app, on both engines: a request made for an
invoice with its link and QR code, the page's questions (accessible, in the customer's language, nothing
chosen in advance), answers stored as text and shown escaped, a token that opens only its own request, a bad
or expired link, the rate limits (nothing accepted is lost), and `amends surveys check`."""

from __future__ import annotations

import io
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import zxingcpp
from fastapi.testclient import TestClient
from PIL import Image

from amends.access import Scope
from amends.events import Event
from amends.events.ledger import append_events
from amends.feedback.requests import AskingPolicy, create_request
from amends.feedback.service import FeedbackDesk
from amends.feedback.surveys import Coaching, check_text
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import new_key, settings_for
from tests.test_feedback_asking import WordLabeller

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"'


@dataclass
class Page:
    client: TestClient
    db: Database
    key: str

    def new_request(self, interaction: str, customer: str = "C-1", **body: Any) -> dict[str, Any]:
        response = self.client.post(
            "/v1/feedback-requests",
            json={"customer": customer, "interaction": interaction, **body},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def path(self, request: dict[str, Any]) -> str:
        return str(request["url"]).removeprefix("http://testserver")


@pytest.fixture
def page(db: Database) -> Iterator[Page]:
    settings = settings_for(
        db, public_url="http://testserver", feedback_page_rate_limit="6/minute", feedback_token_rate_limit="3/minute"
    )
    app = create_app(settings, db)
    # The desk is the lead's to mount once triage lands; triage itself is tested on its own.
    app.state.feedback = FeedbackDesk.from_settings(
        settings, triage=WordLabeller(), intake=app.state.recovery.intake, outreach=app.state.outreach
    )
    with db.unit_of_work(writes=True) as uow:
        profile = Event(
            id="p-1", source="https://crm.example", type="customer.profile", time=datetime(2026, 1, 1, tzinfo=UTC),
            subject="C-de", data={"name": "Lena Schmidt", "email": "lena@example.de", "language": "de"},
        )  # fmt: skip
        append_events(uow, [profile], received_at=datetime(2026, 1, 1, tzinfo=UTC))
        uow.commit()
    with TestClient(app) as client:
        yield Page(client, db, new_key(db, "till", [Scope.FEEDBACK_REQUESTS_WRITE]))


def feedback_rows(db: Database) -> list[Any]:
    with db.engine.connect() as connection:
        return list(connection.execute(sa.select(tables.feedback).order_by(tables.feedback.c.id)).all())


class Elements(HTMLParser):
    """The elements of a page, with their attributes, and the text of each label."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def of(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.elements if name == tag]


def elements(html: str) -> Elements:
    parsed = Elements()
    parsed.feed(html)
    return parsed


# --- the API -----------------------------------------------------------------------------------------------


def test_an_invoice_gets_a_request_whose_link_and_qr_code_open_its_page(page: Page) -> None:
    created = page.new_request("invoice:INV-0042", reference="INV-0042")
    assert created["interaction"] == "invoice:INV-0042"
    assert created["scale"] == "csat"
    assert created["message_id"] is None  # printed, not sent
    again = page.client.post(
        "/v1/feedback-requests",
        json={"customer": "C-1", "interaction": "invoice:INV-0042"},
        headers={"Authorization": f"Bearer {page.key}"},
    )
    assert again.status_code == 200
    assert again.json()["id"] == created["id"]
    assert again.json()["url"] == created["url"]
    auth = {"Authorization": f"Bearer {page.key}"}
    assert page.client.get(f"/v1/feedback-requests/{created['id']}", headers=auth).json()["url"] == created["url"]

    svg = page.client.get(created["qr_svg"], headers=auth)
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert ET.fromstring(svg.content).tag == "{http://www.w3.org/2000/svg}svg"
    png = page.client.get(f"/v1/feedback-requests/{created['id']}/qr.png", headers=auth)
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)).convert("L"))
    assert [code.text for code in decoded] == [created["url"]]
    assert page.client.get(page.path(created)).status_code == 200

    other = new_key(page.db, "reader", [Scope.FEEDBACK_READ])
    refused = page.client.get(created["qr_svg"], headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403
    assert page.client.get("/v1/feedback-requests/999", headers=auth).status_code == 404


def test_a_request_sent_by_api_goes_out_in_the_customers_language(page: Page) -> None:
    created = page.new_request("invoice:INV-0043", customer="C-de", send=True)
    assert created["language"] == "de"
    assert created["message_id"] is not None
    html = page.client.get(page.path(created)).text
    assert '<html lang="de">' in html
    assert "Was gefällt Ihnen nicht?" in html


# --- the page -----------------------------------------------------------------------------------------------


def test_the_page_is_labelled_keyboard_and_screen_reader_friendly_with_nothing_chosen(page: Page) -> None:
    response = page.client.get(page.path(page.new_request("invoice:1")))
    assert response.status_code == 200
    html = response.text
    parsed = elements(html)
    assert parsed.of("html")[0]["lang"] == "en"
    assert any(meta.get("name") == "viewport" for meta in parsed.of("meta"))
    assert not parsed.of("script")
    labelled = {label["for"] for label in parsed.of("label")}
    fields = [*parsed.of("textarea"), *(i for i in parsed.of("input") if i.get("type") not in ("hidden", "submit"))]
    assert len(parsed.of("textarea")) == 2
    assert all(field.get("id") in labelled for field in fields)
    radios = [i for i in parsed.of("input") if i.get("type") == "radio"]
    assert [r["value"] for r in radios] == ["1", "2", "3", "4", "5", ""]
    assert not any("checked" in r for r in radios)
    assert len(parsed.of("fieldset")) == 1
    assert len(parsed.of("legend")) == 1
    assert "What do you like?" in html
    assert "What don&#39;t you like?" in html
    assert "not at all satisfied" in html  # the words at each end of the scale
    headers = response.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script at all
    assert headers["referrer-policy"] == "no-referrer"


def test_html_in_an_answer_is_stored_as_text_and_shown_escaped(page: Page) -> None:
    path = page.path(page.new_request("invoice:2"))
    posted = page.client.post(path, data={"liked": XSS, "disliked": "", "rating": "4"}, follow_redirects=False)
    assert posted.status_code == 303
    [stored] = feedback_rows(page.db)
    assert stored.liked == XSS
    assert (stored.rating, stored.channel) == (4, "page")
    shown = page.client.get(path).text
    assert "<script>" not in shown
    assert "<img src=x" not in shown
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in shown
    assert "&amp; &#34;quotes&#34;" in shown


def test_a_second_answer_changes_the_first_and_another_token_cannot_touch_it(page: Page) -> None:
    mine, theirs = page.new_request("invoice:3"), page.new_request("invoice:4", customer="C-2")
    page.client.post(page.path(mine), data={"liked": "Friendly", "disliked": "Slow", "rating": "3"})
    page.client.post(page.path(mine), data={"liked": "Friendly", "disliked": "Slow checkout", "rating": "2"})
    [answer] = feedback_rows(page.db)
    assert (answer.disliked, answer.rating) == ("Slow checkout", 2)
    their_page = page.client.get(page.path(theirs)).text
    assert "Slow checkout" not in their_page
    assert "Friendly" not in their_page
    page.client.post(page.path(theirs), data={"liked": "Theirs", "rating": ""})
    rows = feedback_rows(page.db)
    assert [(row.request_id, row.liked) for row in rows] == [(mine["id"], "Friendly"), (theirs["id"], "Theirs")]
    shown = page.client.get(page.path(mine)).text
    assert "Slow checkout" in shown
    assert "You can change your answer until" in shown
    assert 'value="2" checked' in shown  # their own answer, shown again to change


def test_an_empty_answer_or_a_rating_off_the_scale_is_refused_with_the_form_again(page: Page) -> None:
    path = page.path(page.new_request("invoice:5"))
    empty = page.client.post(path, data={"liked": "  ", "disliked": "", "rating": ""})
    assert empty.status_code == 422
    assert 'role="alert"' in empty.text
    assert "Please answer one of the questions" in empty.text
    off_scale = page.client.post(path, data={"liked": "ok", "rating": "11"})
    assert off_scale.status_code == 422
    assert feedback_rows(page.db) == []


def test_a_changed_unknown_or_expired_link_shows_a_friendly_page_and_no_data(page: Page) -> None:
    created = page.new_request("invoice:6", reference="INV-SECRET-6")
    path = page.path(created)
    page.client.post(path, data={"liked": "Nice people"})
    tampered = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    for bad in (tampered, "/f/not-a-token", "/f/"):
        response = page.client.get(bad)
        assert response.status_code == 404
        assert "Nice people" not in response.text
    assert page.client.get(tampered).text.count("This link does not work") == 2  # the title and the heading
    assert page.client.post(tampered, data={"liked": "overwrite"}).status_code == 404

    app = page.client.app
    policy = AskingPolicy(ttl=timedelta(days=30))
    long_ago = datetime.now(UTC) - timedelta(days=31)
    with page.db.unit_of_work(writes=True) as uow:
        old = create_request(uow, policy, interaction="invoice:old", customer_id="C-1", now=long_ago, language="en")
        uow.commit()
    assert old.request is not None
    expired_url = app.state.outreach.links.feedback_url(old.request.id, "invoice:old", old.request.expires_at)  # type: ignore[attr-defined]
    expired = page.client.get(expired_url.removeprefix("http://testserver"))
    assert expired.status_code == 404
    assert "INV" not in expired.text
    assert [row.liked for row in feedback_rows(page.db)] == ["Nice people"]


def test_a_post_from_another_site_is_refused(page: Page) -> None:
    path = page.path(page.new_request("invoice:7"))
    refused = page.client.post(path, data={"liked": "x"}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    ours = page.client.post(path, data={"liked": "y"}, headers={"Origin": "null"}, follow_redirects=False)
    assert ours.status_code == 303
    assert [row.liked for row in feedback_rows(page.db)] == ["y"]


def test_a_flood_is_rate_limited_and_what_was_accepted_is_kept(page: Page) -> None:
    one = page.path(page.new_request("invoice:8"))
    statuses = [page.client.post(one, data={"liked": f"try {n}"}, follow_redirects=False).status_code for n in range(4)]
    assert statuses == [303, 303, 303, 429]  # three a minute on one token
    assert [row.liked for row in feedback_rows(page.db)] == ["try 2"]
    others = [page.path(page.new_request(f"invoice:9-{n}", customer=f"C-{n}")) for n in range(4)]
    more = [page.client.post(path, data={"liked": "fine"}, follow_redirects=False).status_code for path in others]
    assert more == [303, 303, 429, 429]  # six a minute from one address, four of them used above
    limited = page.client.post(others[3], data={"liked": "fine"})
    assert limited.status_code == 429
    assert "Retry-After" in limited.headers
    assert "what you already sent us is kept" in limited.text
    assert [row.liked for row in feedback_rows(page.db)] == ["try 2", "fine", "fine"]


# --- honest questions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Please give us a 10 if you were happy!", Coaching.ASKS_FOR_SCORE),
        ("Rate us 5 stars on the survey.", Coaching.ASKS_FOR_SCORE),
        ("Anything less than 5 counts as a failure for our team.", Coaching.LABELS_LOW_SCORES),
        ("Below 9 is a fail.", Coaching.LABELS_LOW_SCORES),
        ("My bonus depends on your answer.", Coaching.LABELS_LOW_SCORES),
        ('<input type="radio" name="rating" value="5" checked>', Coaching.PRESELECTED),
        ("default_rating: 5", Coaching.PRESELECTED),
        ("How much did you love our service?", Coaching.LEADING),
        ("Geben Sie uns eine 10!", Coaching.ASKS_FOR_SCORE),
        ("Cualquier nota inferior a 9 es un fracaso.", Coaching.LABELS_LOW_SCORES),
    ],
)
def test_coaching_is_found_and_explained(text: str, kind: Coaching) -> None:
    [finding] = check_text(text, where="survey")
    assert finding.kind is kind
    assert finding.line == 1
    assert len(finding.why) > 40


def test_honest_questions_pass() -> None:
    honest = """What do you like? What don't you like?
How satisfied are you, all in all? (1 = not at all satisfied, 5 = very satisfied)
<input type="radio" name="rating" value="5"{% if rating == 5 %} checked{% endif %}>
default_rating: null
We read every answer, and we reply to every one."""
    assert check_text(honest, where="survey") == []


def test_amends_surveys_check_passes_the_shipped_texts_and_fails_a_coaching_file(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "amends.cli", "surveys", "check", *args],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip

    shipped = run()
    assert shipped.returncode == 0, shipped.stderr
    assert "No coaching found" in shipped.stdout
    survey = tmp_path / "survey.yaml"
    survey.write_text("intro: Thanks for coming!\nask: Please rate us 5 stars - anything below 5 is a fail.\n")
    found = run(str(survey))
    assert found.returncode == 1
    assert f"{survey}:2: asks_for_score" in found.stderr
    assert f"{survey}:2: labels_low_scores" in found.stderr
    assert "measures the asking" in found.stderr
    assert run(str(tmp_path / "missing.yaml")).returncode == 2
