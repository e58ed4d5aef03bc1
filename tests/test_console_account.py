"""A staff member's own account page, through HTTP on each database: changing their password with the current
one (common passwords refused, a strength estimate as they type, a wrong current password counted like a failed
login), the email that tells them, and their sessions, any other of which they end (docs/console.md#your-account).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.errors import InvalidInput
from amends.recover.roles import Role
from amends.recover.staff import add_staff, set_password
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import settings_for
from tests.test_console import PASSWORD, csrf_of, log_in

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
NEW_PASSWORD = "lantern orchard quietly 42 sails"
_REF = re.compile(r'name="session" value="([0-9a-f]{16})"')


@dataclass
class Site:
    app: TestClient
    db: Database

    def browser(self, agent: str = "testclient", address: str = "10.0.0.1") -> TestClient:
        """A new browser with cookies of its own, its User-Agent and its address."""
        return TestClient(
            self.app.app, base_url="http://testserver", follow_redirects=False, headers={"User-Agent": agent},
            client=(address, 50000),
        )  # fmt: skip

    def signed_in(self, who: str = "ana", password: str = PASSWORD, **kwargs: str) -> TestClient:
        browser = self.browser(**kwargs)
        response = log_in(browser, who, password)
        assert response.status_code == 303, response.text  # type: ignore[attr-defined]
        return browser

    def audited(self, action: str) -> list[sa.Row[tuple[str, str, object]]]:
        log = tables.audit_log
        with self.db.unit_of_work() as uow:
            return list(uow.execute(sa.select(log.c.actor, log.c.target, log.c.details).where(log.c.action == action)))

    def messages_to(self, recipient: str) -> list[sa.Row[tuple[str, str, str, str]]]:
        m = tables.messages
        with self.db.unit_of_work() as uow:
            query = sa.select(m.c.channel, m.c.kind, m.c.subject, m.c.text).where(m.c.recipient == recipient)
            return list(uow.execute(query))


@pytest.fixture
def site(db: Database) -> Iterator[Site]:
    with db.unit_of_work() as uow:
        add_staff(uow, "ana", name="Ana Agent", role=Role.AGENT, team="air", email="ana@example.com", now=NOW)
        add_staff(uow, "bob", name="Bob", role=Role.AGENT, team="air", now=NOW)  # no email address
        for staff_id in ("ana", "bob"):
            set_password(uow, staff_id, PASSWORD, now=NOW)
        uow.commit()
    app = create_app(settings_for(db, console_login_rate_limit="5/minute"), db)
    with TestClient(app) as client:
        yield Site(client, db)


def change(browser: TestClient, current: str, new: str, repeat: str | None = None) -> httpx.Response:
    csrf = csrf_of(browser.get("/console/account").text)
    return browser.post(
        "/console/account/password",
        data={"csrf": csrf, "current": current, "new": new, "repeat": new if repeat is None else repeat},
    )


def test_the_account_page_is_in_the_menu_and_shows_the_person_and_their_sessions(site: Site) -> None:
    browser = site.signed_in(agent="Firefox on the desk")
    queue = browser.get("/console")
    assert '<a href="/console/account"' in queue.text
    page = browser.get("/console/account")
    assert page.status_code == 200
    assert "Ana Agent" in page.text
    assert "ana@example.com" in page.text
    assert "Firefox on the desk" in page.text
    assert "10.0.0.1" in page.text
    assert "this browser" in page.text
    assert 'autocomplete="current-password"' in page.text
    assert 'autocomplete="new-password"' in page.text
    assert page.text.count("data-reveal") == 3  # each password field gets a show button from console.js
    assert "<script>" not in page.text  # no inline script: the console's CSP forbids it


def test_a_person_changes_their_password_with_the_current_one_and_their_other_sessions_end(site: Site) -> None:
    here, elsewhere = site.signed_in(agent="here"), site.signed_in(agent="elsewhere")
    wrong = change(here, "not my password at all", NEW_PASSWORD)
    assert wrong.status_code == 422
    assert "current: that is not your current password" in wrong.text
    assert 'id="current" name="current" type="password" autocomplete="current-password" required' in wrong.text
    mismatch = change(here, PASSWORD, NEW_PASSWORD, "lantern orchard quietly 42 sail")
    assert mismatch.status_code == 422
    assert "repeat: is not the same as the new password" in mismatch.text
    short = change(here, PASSWORD, "short one")
    assert short.status_code == 422
    assert "new: at least 12 characters" in short.text
    for weak, why in (("password1234", "new: too easy to guess"), ("qwertyuiop123", "new: too easy to guess"),
                      ("Ana Agent ana@example.com", "new: is made of your name, id or email")):  # fmt: skip
        refused = change(here, PASSWORD, weak)
        assert refused.status_code == 422, weak
        assert why in refused.text, weak
    assert log_in(site.browser(), "ana", PASSWORD).status_code == 303  # nothing refused changed the password
    assert [row.actor for row in site.audited("staff.password_change_failed")] == ["staff:ana"]

    done = change(here, PASSWORD, NEW_PASSWORD)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/account?done=password"
    assert "Your password is changed" in here.get(done.headers["location"]).text
    assert here.get("/console").status_code == 200  # the session it was changed from stays
    assert elsewhere.get("/console").headers["location"].startswith("/console/login")  # every other one ended
    assert log_in(site.browser(), "ana", PASSWORD).status_code == 401
    assert log_in(site.browser(), "ana", NEW_PASSWORD).status_code == 303
    [entry] = site.audited("staff.password_changed")
    assert entry.actor == "staff:ana"
    assert entry.target == "staff:ana"
    assert entry.details == {"via": "console", "sessions_ended": 2}  # elsewhere's, and the check's login above
    # Told by email, through the outbox (ASVS 2.2.3), without the password.
    [mail] = site.messages_to("ana@example.com")
    assert (mail.channel, mail.kind) == ("email", "alert")
    assert "sign-in was changed" in mail.subject
    assert "Your console password was changed." in mail.text
    assert "10.0.0.1" in mail.text
    assert NEW_PASSWORD not in mail.text
    assert PASSWORD not in mail.text


def test_a_person_without_an_email_address_changes_their_password_and_no_message_is_written(site: Site) -> None:
    bob = site.signed_in("bob")
    assert change(bob, PASSWORD, NEW_PASSWORD).status_code == 303
    with site.db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.messages)).scalar_one() == 0


def test_wrong_current_passwords_count_towards_the_login_limit(site: Site) -> None:
    browser = site.signed_in()
    for _ in range(5):
        assert change(browser, "a guess at the password", NEW_PASSWORD).status_code == 422
    limited = change(browser, PASSWORD, NEW_PASSWORD)
    assert limited.status_code == 429
    assert "too many wrong passwords" in limited.text
    assert log_in(site.browser(), "ana", PASSWORD).status_code == 429  # the same address, the same limit
    assert log_in(site.browser(address="10.0.0.2"), "ana", PASSWORD).status_code == 429  # and the same name
    assert len(site.audited("staff.password_change_failed")) == 5


def test_the_strength_of_a_new_password_is_estimated_as_it_is_typed_and_nothing_is_kept(site: Site) -> None:
    browser = site.signed_in()
    csrf = csrf_of(browser.get("/console/account").text)

    def estimate(password: str) -> dict[str, object]:
        response = browser.post("/console/account/strength", data={"csrf": csrf, "password": password})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body: dict[str, object] = response.json()
        return body

    common = estimate("password1234")
    assert common["enough"] is False
    assert common["score"] in (0, 1)
    assert "common" in str(common["warning"])
    assert estimate("ana.agent")["enough"] is False  # short, whatever its score
    strong = estimate(NEW_PASSWORD)
    assert strong == {"score": 4, "words": "very strong", "enough": True, "warning": "", "suggestions": []}
    assert browser.post("/console/account/strength", data={"password": "x"}).status_code == 403  # the form's token
    assert site.audited("staff.password_changed") == []


def test_a_person_sees_their_sessions_and_ends_another_but_never_someone_elses(site: Site) -> None:
    here = site.signed_in(agent="Browser here")
    there = site.signed_in(agent="Browser there", address="10.0.0.9")
    page = here.get("/console/account").text
    assert "Browser here" in page
    assert "Browser there" in page
    assert "10.0.0.9" in page
    [there_ref] = _REF.findall(page)  # the one this browser is using has no End button
    csrf = csrf_of(page)

    # Bob cannot end Ana's session, even knowing its reference: he has no such session.
    bob = site.signed_in("bob")
    bob_csrf = csrf_of(bob.get("/console/account").text)
    tried = bob.post("/console/account/sessions/end", data={"csrf": bob_csrf, "session": there_ref})
    assert tried.headers["location"] == "/console/account?done=gone"
    assert there.get("/console").status_code == 200

    ended = here.post("/console/account/sessions/end", data={"csrf": csrf, "session": there_ref})
    assert ended.headers["location"] == "/console/account?done=ended"
    assert there.get("/console").headers["location"].startswith("/console/login")
    assert here.get("/console").status_code == 200
    [entry] = site.audited("console.session_ended")
    assert entry.actor == "staff:ana"
    assert entry.details["session"] == there_ref
    again = here.post("/console/account/sessions/end", data={"csrf": csrf, "session": there_ref})
    assert again.headers["location"] == "/console/account?done=gone"
    junk = here.post("/console/account/sessions/end", data={"csrf": csrf, "session": "../../x"})
    assert junk.status_code == 422
    assert "session: not a session" in junk.text


def test_ending_every_other_session_keeps_this_one_and_this_one_is_ended_by_logging_out(site: Site) -> None:
    here = site.signed_in()
    others = [site.signed_in(agent=f"other {n}") for n in range(3)]
    page = here.get("/console/account").text
    csrf = csrf_of(page)
    assert len(_REF.findall(page)) == 3
    done = here.post("/console/account/sessions/end", data={"csrf": csrf, "session": "others"})
    assert done.headers["location"] == "/console/account?done=others"
    assert all(o.get("/console").headers["location"].startswith("/console/login") for o in others)
    page = here.get("/console/account").text
    assert _REF.findall(page) == []
    assert "End every other session" not in page
    with site.db.unit_of_work() as uow:
        sessions = uow.execute(sa.select(tables.console_sessions.c.id)).all()
    assert len(sessions) == 1
    own_ref = _own_ref(sessions[0].id)
    refused = here.post("/console/account/sessions/end", data={"csrf": csrf, "session": own_ref})
    assert refused.status_code == 422
    assert "log out to end it" in refused.text
    assert [row.details for row in site.audited("console.sessions_ended")] == [{"sessions": 3}]


def test_a_password_an_admin_sets_is_refused_when_common_or_made_of_the_persons_name(site: Site) -> None:
    with site.db.unit_of_work() as uow:
        with pytest.raises(InvalidInput, match="password: too easy to guess"):
            set_password(uow, "ana", "password1234", now=NOW)
        with pytest.raises(InvalidInput, match="password: is made of your name, id or email"):
            set_password(uow, "ana", "ana.agent@example.com2026", now=NOW)


def _own_ref(session_id: str) -> str:
    from amends.access.sessions import Session

    return Session(session_id, "ana", "", NOW, NOW, NOW).ref


def test_a_person_makes_their_own_api_key_sees_it_once_and_a_new_one_replaces_it(site: Site) -> None:
    browser = site.signed_in()
    page = browser.get("/console/account")
    assert "You have no API key in use." in page.text
    made = browser.post("/console/account/key", data={"csrf": csrf_of(page.text)})
    assert made.status_code == 200
    assert made.headers["Cache-Control"] == "no-store"
    shown = re.search(r'id="new-key"[^>]*value="(amends_[0-9a-f]{12}_[A-Za-z0-9_-]{43})"', made.text)
    assert shown is not None, made.text
    first = shown.group(1)
    me = site.app.get("/v1/staff", headers={"Authorization": f"Bearer {first}"})
    assert me.status_code == 200  # it acts as ana
    again = browser.get("/console/account")
    assert first not in again.text  # shown once
    assert first.split("_")[1] in again.text  # its id is, with when it stops working
    assert "it works until" in again.text

    renewed = browser.post("/console/account/key", data={"csrf": csrf_of(again.text)})
    second = re.search(r'id="new-key"[^>]*value="([^"]+)"', renewed.text)
    assert second is not None
    assert second.group(1) != first
    assert site.app.get("/v1/staff", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert site.app.get("/v1/staff", headers={"Authorization": f"Bearer {second.group(1)}"}).status_code == 200

    revoked = browser.post("/console/account/key/revoke", data={"csrf": csrf_of(renewed.text)})
    assert revoked.status_code == 303
    assert site.app.get("/v1/staff", headers={"Authorization": f"Bearer {second.group(1)}"}).status_code == 401
    assert "You have no API key in use." in browser.get("/console/account").text
    made_or_revoked = [(row.actor, row.target) for row in site.audited("staff.key_created")]
    assert made_or_revoked == [("staff:ana", "staff:ana")] * 2
    assert len(site.audited("staff.key_revoked")) == 1
    # A form without the session's token makes nothing.
    assert browser.post("/console/account/key", data={}).status_code == 403
    with site.db.unit_of_work() as uow:
        in_use = uow.execute(sa.select(tables.api_keys).where(tables.api_keys.c.revoked_at.is_(None))).all()
    assert in_use == []
