"""/v1/staff: the people who work cases (admins manage them; everyone may read the list of their colleagues)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from amends.errors import Forbidden
from amends.recover import staff
from amends.recover.actors import Actor
from amends.recover.audit import audit, list_audit
from amends.recover.roles import Role
from amends.store import UnitOfWork
from amends.web.deps import DB, Acting, AppSettings, in_transaction, reading
from amends.web.errors import RECOVERY_ERRORS

router = APIRouter(prefix="/v1/staff", tags=["staff"])


class StaffOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    email: str | None
    role: Role
    team: str | None
    active: bool
    created_at: datetime


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=100, description="The company's own staff id.")
    name: str = Field(min_length=1, max_length=200)
    role: Role
    team: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)


class StaffChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    team: str | None = Field(default=None, max_length=100, description="An empty string takes them out of a team.")
    email: str | None = Field(default=None, max_length=320, description="An empty string removes it.")
    active: StrictBool | None = None


class StaffKeyOut(BaseModel):
    key_id: str
    key: str = Field(description="Shown this once; only its hash is kept.")
    expires_at: datetime = Field(description="When it stops working (the setting `staff_key_lifetime` from now).")


def _admin(actor: Actor, doing: str) -> None:
    actor.at_least(Role.ADMIN, doing)


@router.get("", response_model=list[StaffOut], responses=RECOVERY_ERRORS)
async def read_staff(
    db: DB, actor: Acting, team: Annotated[str | None, Query(max_length=100)] = None
) -> list[StaffOut]:
    """Staff, by id (staff keys only: integrations have no business with the staff list)."""
    actor.person("listing staff")
    members = await reading(db, lambda uow: staff.list_staff(uow, team=team))
    return [StaffOut.model_validate(m) for m in members]


@router.post("", response_model=StaffOut, status_code=201, responses=RECOVERY_ERRORS)
async def post_staff(body: StaffIn, db: DB, actor: Acting) -> StaffOut:
    """Add a staff member (admins)."""
    _admin(actor, "adding staff")

    def run(uow: UnitOfWork) -> staff.StaffMember:
        now = datetime.now(UTC)
        member = staff.add_staff(
            uow, body.id, name=body.name, role=body.role, team=body.team, email=body.email, now=now
        )
        audit(uow, actor, "staff.added", f"staff:{member.id}", at=now, role=member.role.value, team=member.team)
        return member

    return StaffOut.model_validate(await in_transaction(db, run))


@router.patch("/{staff_id}", response_model=StaffOut, responses=RECOVERY_ERRORS)
async def patch_staff(staff_id: str, body: StaffChange, db: DB, actor: Acting) -> StaffOut:
    """Change a staff member's name, role, team or whether they are active (admins)."""
    _admin(actor, "changing staff")
    changes = body.model_dump(exclude_unset=True)

    def run(uow: UnitOfWork) -> staff.StaffMember:
        member = staff.update_staff(uow, staff_id, **changes)
        shown = {k: (v.value if isinstance(v, Role) else v) for k, v in changes.items()}
        audit(uow, actor, "staff.changed", f"staff:{staff_id}", at=datetime.now(UTC), **shown)
        return member

    return StaffOut.model_validate(await in_transaction(db, run))


@router.post("/{staff_id}/keys", response_model=StaffKeyOut, status_code=201, responses=RECOVERY_ERRORS)
async def post_staff_key(staff_id: str, db: DB, actor: Acting, settings: AppSettings) -> StaffKeyOut:
    """A new API key that acts as this staff member (admins); shown once. It expires after `staff_key_lifetime`.
    A member of a role that signs in with a second step (`console_second_factor_roles`) makes their own key on the
    console's account page, past that step: an API key cannot show it was made there."""
    _admin(actor, "creating a staff key")

    def run(uow: UnitOfWork) -> StaffKeyOut:
        now = datetime.now(UTC)
        member = staff.get_staff(uow, staff_id)
        if member.role.value in settings.console_second_factor_roles:
            raise Forbidden(
                f"creating a staff key: {member.role.value}s sign in with a second step, so {member.id} makes their "
                "own key on the console's account page"
            )
        key, text = staff.create_staff_key(uow, staff_id, now=now, lifetime=settings.staff_key_lifetime)
        audit(uow, actor, "staff.key_created", f"staff:{staff_id}", at=now, key_id=key.id)
        assert key.expires_at is not None  # a staff key always expires
        return StaffKeyOut(key_id=key.id, key=text, expires_at=key.expires_at)

    return await in_transaction(db, run)


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str = Field(description="staff:<id>, key:<id>, or system.")
    action: str
    target: str
    origin: str | None = Field(description="The client's address, when it came over HTTP.")
    details: dict[str, object]
    hash: str | None = Field(
        description="SHA-256 of the entry before's hash and this entry's content: the audit log is a hash chain "
        "(docs/security.md#audit-log; `amends audit verify` checks it)."
    )


audit_router = APIRouter(prefix="/v1/audit", tags=["staff"])


@audit_router.get("", response_model=list[AuditOut], responses=RECOVERY_ERRORS)
async def read_audit(
    db: DB,
    actor: Acting,
    target: Annotated[str | None, Query(max_length=120, description="e.g. case:12, approval:3, staff:ana")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    """The audit log, newest first: who decided what, when and from where (managers and admins)."""
    actor.at_least(Role.MANAGER, "reading the audit log")
    entries = await reading(db, lambda uow: list_audit(uow, target=target, limit=limit))
    return [AuditOut.model_validate(entry) for entry in entries]
