"""The second step at login, through HTTP on each database: setting up an authenticator on one's account page
(confirmed with a code before it is on; recovery codes shown once, kept as hashes), the halfway session after the
password that opens no page, codes that cannot be used twice, wrong codes counted with wrong passwords, roles that
must have it, and an administrator's reset (docs/console.md#second-step-at-login).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from amends.recover.actors import SYSTEM
from amends.recover.roles import Role
from amends.recover.second_factor import reset_second_factor
from amends.recover.staff import add_staff, set_password
from amends.store import Database, tables
from amends.web import create_app
from tests.conftest import settings_for
from tests.test_cli import amends
from tests.test_console import PASSWORD, csrf_of, log_in

NOW = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
_SECRET = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')
_CODES = re.compile(r"<li><code>([a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4})</code></li>")


@dataclass
class Site:
    app: TestClient
    db: Database

    def browser(self) -> TestClient:
        return TestClient(self.app.app, base_url="http://testserver", follow_redirects=False)

    def audited(self, action: str) -> int:
        log = tables.audit_log
        with self.db.unit_of_work() as uow:
            return int(uow.execute(sa.select(sa.func.count()).where(log.c.action == action)).scalar_one())

    def enrol(self, who: str) -> tuple[str, list[str], TestClient]:
        """Log `who` in, set up their second step; the secret, the recovery codes and the browser."""
        browser = self.browser()
        assert log_in(browser, who, PASSWORD).status_code == 303  # type: ignore[attr-defined]
        return (*set_up(browser), browser)


def set_up(browser: TestClient) -> tuple[str, list[str]]:
    page = browser.get("/console/account/second-factor")
    assert page.status_code == 200, page.text
    started = browser.post("/console/account/second-factor/start", data={"csrf": csrf_of(page.text)})
    assert started.status_code == 303, started.text
    page = browser.get("/console/account/second-factor")
    secret = _SECRET.search(page.text)
    assert secret is not None, page.text
    assert 'src="data:image/svg+xml' in page.text  # the QR code, drawn by segno: no script, allowed by the CSP
    done = browser.post(
        "/console/account/second-factor/confirm",
        data={"csrf": csrf_of(page.text), "code": pyotp.TOTP(secret.group(1)).now()},
    )
    assert done.status_code == 200, done.text
    codes = _CODES.findall(done.text)
    assert len(codes) == 10
    return secret.group(1), codes


def next_code(site: Site, who: str, secret: str) -> str:
    """A code of the step after the last one used (the one that turned it on was now's): within the window."""
    with site.db.unit_of_work() as uow:
        last = uow.execute(sa.select(tables.staff.c.totp_last_step).where(tables.staff.c.id == who)).scalar_one()
    return pyotp.TOTP(secret).generate_otp(last + 1)


def password_only(site: Site, who: str, next_url: str = "/console/approvals") -> TestClient:
    browser = site.browser()
    response = log_in(browser, who, PASSWORD, next_url)
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"].startswith("/console/login/code")  # type: ignore[attr-defined]
    return browser


def enter(browser: TestClient, code: str, next_url: str = "/console") -> httpx.Response:
    page = browser.get(f"/console/login/code?next={next_url}")
    assert page.status_code == 200, page.text
    return browser.post("/console/login/code", data={"csrf": csrf_of(page.text), "code": code, "next": next_url})


@pytest.fixture
def site(db: Database) -> Iterator[Site]:
    with db.unit_of_work() as uow:
        for staff_id, role in (("ana", Role.AGENT), ("boss", Role.MANAGER)):
            add_staff(uow, staff_id, name=staff_id.title(), role=role, team="air", email=f"{staff_id}@example.com",
                      now=NOW)  # fmt: skip
            set_password(uow, staff_id, PASSWORD, now=NOW)
        uow.commit()
    settings = settings_for(db, console_login_rate_limit="5/minute", console_second_factor_roles=("manager",))
    with TestClient(create_app(settings, db)) as client:
        yield Site(client, db)


def test_setting_up_needs_a_code_from_the_app_and_shows_the_secret_and_recovery_codes_only_once(site: Site) -> None:
    browser = site.browser()
    assert log_in(browser, "ana", PASSWORD).status_code == 303  # type: ignore[attr-defined]
    account = browser.get("/console/account").text
    assert "Off: your password alone opens your account." in account
    page = browser.get("/console/account/second-factor")
    browser.post("/console/account/second-factor/start", data={"csrf": csrf_of(page.text)})
    page = browser.get("/console/account/second-factor")
    found = _SECRET.search(page.text)
    assert found is not None
    secret = found.group(1)
    wrong = browser.post("/console/account/second-factor/confirm", data={"csrf": csrf_of(page.text), "code": "000000"})
    assert wrong.status_code == 422
    assert "code: not the code your app shows now" in wrong.text
    assert "Off:" in browser.get("/console/account").text  # not on until a right code
    done = browser.post(
        "/console/account/second-factor/confirm", data={"csrf": csrf_of(page.text), "code": pyotp.TOTP(secret).now()}
    )
    codes = _CODES.findall(done.text)
    assert len(set(codes)) == 10
    again = browser.get("/console/account/second-factor").text
    assert secret not in again  # never shown again
    assert not _CODES.findall(again)
    assert "10 of your recovery codes are left" in again
    assert "On: you sign in with a code" in browser.get("/console/account").text
    with site.db.unit_of_work() as uow:
        stored = uow.execute(sa.select(tables.staff_recovery_codes.c.code_hash)).scalars().all()
    assert len(stored) == 10
    assert not set(codes) & set(stored)  # kept as hashes only
    assert site.audited("staff.second_factor_enabled") == 1
    m = tables.messages
    with site.db.unit_of_work() as uow:
        texts = uow.execute(sa.select(m.c.text).where(m.c.recipient == "ana@example.com")).scalars().all()
    assert len(texts) == 1
    assert "A second step (an authenticator app) was set up" in texts[0]
    assert secret not in texts[0]
    restart = browser.post("/console/account/second-factor/start", data={"csrf": csrf_of(again)})
    assert restart.status_code == 409  # on already: only an administrator resets it


def test_after_the_password_a_halfway_session_opens_nothing_until_the_code(site: Site) -> None:
    secret, _codes, _first = site.enrol("ana")
    browser = password_only(site, "ana", "/console/feedback")
    halfway = browser.cookies["amends_session"]
    for path in ("/console", "/console/feedback", "/console/account", "/console/account/second-factor"):
        response = browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/login/code", path
    csrf = csrf_of(browser.get("/console/login/code").text)
    refused = browser.post("/console/account/password", data={"csrf": csrf, "current": PASSWORD, "new": "x" * 20,
                                                              "repeat": "x" * 20})  # fmt: skip
    assert refused.headers["location"] == "/console/login/code"
    forged = browser.post("/console/login/code", data={"code": "123456"})  # no CSRF token
    assert forged.status_code == 403
    elsewhere = browser.post(
        "/console/login/code", data={"csrf": csrf, "code": "1"}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403
    wrong = enter(browser, "123456")
    assert wrong.status_code == 401
    assert "not right, or it was used already" in wrong.text
    with site.db.unit_of_work() as uow:
        last = uow.execute(sa.select(tables.staff.c.totp_last_step).where(tables.staff.c.id == "ana")).scalar_one()
    assert enter(browser, pyotp.TOTP(secret).generate_otp(last)).status_code == 401  # turned it on: used up
    done = enter(browser, next_code(site, "ana", secret), "/console/feedback")
    assert done.status_code == 303
    assert done.headers["location"] == "/console/feedback"
    assert browser.cookies["amends_session"] != halfway  # a new token for the full session
    assert browser.get("/console/feedback").status_code == 200
    stale = site.browser()
    stale.cookies.set("amends_session", halfway)
    assert stale.get("/console").headers["location"].startswith("/console/login")
    assert site.audited("console.code_failed") == 2


def test_a_code_opens_once_and_a_recovery_code_once(site: Site) -> None:
    secret, codes, _first = site.enrol("ana")
    # The code that turned it on cannot open a session; the next step's can, once.
    totp = pyotp.TOTP(secret)
    browser = password_only(site, "ana")
    with site.db.unit_of_work() as uow:
        last = uow.execute(sa.select(tables.staff.c.totp_last_step).where(tables.staff.c.id == "ana")).scalar_one()
    assert enter(browser, totp.generate_otp(last)).status_code == 401  # used to turn it on: not again
    fresh = totp.generate_otp(last + 1)  # the next step: within the window either side of now
    assert enter(browser, fresh).status_code == 303
    other = password_only(site, "ana")
    assert enter(other, fresh).status_code == 401  # replayed within its window: refused
    assert enter(other, codes[0].upper().replace("-", " ")).status_code == 303  # as typed from paper
    third = password_only(site, "ana")
    assert enter(third, codes[0]).status_code == 401  # used up
    assert site.audited("staff.recovery_code_used") == 1
    page = browser.get("/console/account/second-factor").text
    assert "9 of your recovery codes are left" in page


def test_wrong_codes_count_towards_the_login_limit(site: Site) -> None:
    secret, _codes, _first = site.enrol("ana")
    browser = password_only(site, "ana")
    for _ in range(5):
        assert enter(browser, "000000").status_code == 401
    limited = enter(browser, next_code(site, "ana", secret))
    assert limited.status_code == 429
    assert log_in(site.browser(), "ana", PASSWORD).status_code == 429  # type: ignore[attr-defined]


def test_a_role_that_needs_a_second_step_is_sent_to_set_it_up_and_reaches_nothing_else(site: Site) -> None:
    browser = site.browser()
    first = log_in(browser, "boss", PASSWORD, "/console/approvals")
    assert first.headers["location"] == "/console/account/second-factor"  # type: ignore[attr-defined]
    for path in ("/console", "/console/approvals", "/console/account", "/console/ledger"):
        response = browser.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/account/second-factor", path
    page = browser.get("/console/account/second-factor")
    assert "nothing else of the console opens until it is on" in page.text
    assert "Log out" in page.text
    assert '<nav aria-label="Console">' not in page.text  # no menu while halfway
    halfway = browser.cookies["amends_session"]
    secret, _codes = set_up(browser)
    assert browser.cookies["amends_session"] != halfway  # the full session under a new token
    assert browser.get("/console/approvals").status_code == 200
    # From now on, the password and then a code.
    again = password_only(site, "boss")
    assert enter(again, next_code(site, "boss", secret)).status_code == 303
    # An agent's role does not need it: the password alone still opens the console.
    assert log_in(site.browser(), "ana", PASSWORD).headers["location"] == "/console"  # type: ignore[attr-defined]


def test_an_admin_resets_a_lost_second_step_and_every_session_ends(site: Site) -> None:
    _secret, _codes, browser = site.enrol("ana")
    with site.db.unit_of_work() as uow:
        assert reset_second_factor(uow, "ana", actor=SYSTEM, now=NOW)
        uow.commit()
    assert browser.get("/console").headers["location"].startswith("/console/login")
    assert log_in(site.browser(), "ana", PASSWORD).headers["location"] == "/console"  # type: ignore[attr-defined]
    with site.db.unit_of_work() as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(tables.staff_recovery_codes)).scalar_one() == 0
    assert site.audited("staff.second_factor_reset") == 1


def test_the_reset_command_names_the_person(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AMENDS_")}
    env |= {"AMENDS_DATABASE_URL": f"sqlite:///{tmp_path / 'amends.db'}", "COLUMNS": "200"}
    assert amends("init", env=env, cwd=tmp_path).returncode == 0
    assert amends("staff", "add", "ana", "--name", "Ana", env=env, cwd=tmp_path).returncode == 0
    done = amends("staff", "reset-second-factor", "ana", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ana had no second step" in done.stderr
    missing = amends("staff", "reset-second-factor", "nobody", env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert "no staff member 'nobody'" in missing.stderr


def test_the_roles_that_need_a_second_step_are_read_from_the_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from amends.config import Settings

    monkeypatch.setenv("AMENDS_CONSOLE_SECOND_FACTOR_ROLES", "manager, admin")
    assert Settings().console_second_factor_roles == ("manager", "admin")
    monkeypatch.setenv("AMENDS_CONSOLE_SECOND_FACTOR_ROLES", "admins")
    with pytest.raises(ValidationError, match="unknown role 'admins'; the roles are agent, lead, manager, admin"):
        Settings()
