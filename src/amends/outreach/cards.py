"""Hand-written cards: the card channel turns a card message into a task for staff, who print it, write the card
by hand and post it; the PDFs they copy from; and the marks that say it was written and posted.

A task is made once per message (unique on `message_id`): the outbox delivers at least once, and a repeat finds
the task already there. Marks are made once, in order (written, then posted), each audited with who and when.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import resources
from typing import Any

import sqlalchemy as sa
from fpdf import FPDF
from fpdf.fonts import FontFace, TTFFont
from sqlalchemy.dialects import postgresql, sqlite

from amends.config import Settings
from amends.errors import Conflict, InvalidInput, NotFound
from amends.outreach.channels import channels_from_settings
from amends.outreach.outbox import Channel, Message, MessageKind, Outcome
from amends.recover.actors import Actor
from amends.recover.audit import audit
from amends.store import Database, UnitOfWork, tables
from amends.store.paging import decode_cursor, encode_cursor

__all__ = [
    "FONT",
    "CardChannel",
    "CardState",
    "CardTask",
    "card_pdf",
    "get_card_task",
    "list_card_tasks",
    "mark_posted",
    "mark_printed",
    "mark_written",
    "print_cards",
    "print_sheet",
    "worker_channels",
]

_tasks = tables.card_tasks
_messages = tables.messages
_MAX_LIMIT = 1000
_MAX_SHEET = 200  # cards on one print sheet: more than a person writes in a day; about 3 s and 300 KB of PDF


class CardState(StrEnum):
    TO_WRITE = "to_write"  # made by the channel, printed or not
    WRITTEN = "written"  # written by hand, not yet posted
    POSTED = "posted"


@dataclass(frozen=True, slots=True)
class CardTask:
    """A card to write and post, with what its message says: `recipient` is the postal block (the name, then the
    address lines), `subject` the heading staff see in the queue, `text` the note to copy by hand."""

    id: int
    message_id: int
    case_id: int | None
    customer_id: str
    kind: MessageKind
    recipient: str
    subject: str
    text: str
    created_at: datetime
    printed_at: datetime | None
    written_at: datetime | None
    written_by: str | None
    posted_at: datetime | None
    posted_by: str | None

    @property
    def state(self) -> CardState:
        if self.posted_at is not None:
            return CardState.POSTED
        if self.written_at is not None:
            return CardState.WRITTEN
        return CardState.TO_WRITE

    @property
    def postal_lines(self) -> tuple[str, ...]:
        """The postal block's lines, blank ones dropped: the name first, then the address."""
        return _postal_lines(self.recipient)

    @property
    def name(self) -> str:
        """The customer's name: the postal block's first line."""
        lines = self.postal_lines
        return lines[0] if lines else ""

    @property
    def has_address(self) -> bool:
        """Whether there is an address to post to: a block of the name alone is a card staff must get to the
        customer some other way (ask for the address, or hand it over)."""
        return len(self.postal_lines) > 1


# --- the channel -----------------------------------------------------------------------------------------


class CardChannel:
    """The `card` channel: each message becomes a card task in the database, for staff to print, write and post.

    Idempotent on the message: a message delivered again (a worker that stopped before settling) finds its task
    and answers the same. A message with an empty postal block is a permanent failure, since no retry can add
    one; a block of the name alone makes a task without an address (`has_address` false), for staff to get the
    card to the customer another way.
    """

    name = "card"

    def __init__(self, db: Database, *, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self._clock = clock or _utcnow

    def __repr__(self) -> str:
        return f"CardChannel({self.db!r})"

    def send(self, messages: Sequence[Message]) -> list[Outcome]:
        """Make a task of each message, in one transaction; one outcome each, in order."""
        if not messages:
            return []
        now = self._clock()
        outcomes: list[Outcome] = []
        with self.db.unit_of_work(writes=True) as uow:
            for message in messages:
                problem = _postal_problem(message.recipient)
                if problem is not None:
                    outcomes.append(Outcome(message.id, ok=False, permanent=True, error=problem))
                    continue
                task_id = _make_task(uow, message, now)
                outcomes.append(Outcome(message.id, ok=True, provider_id=f"card-task:{task_id}"))
            uow.commit()
        return outcomes


def worker_channels(settings: Settings, db: Database) -> dict[str, Channel]:
    """Every channel a worker sends through: those of `channels_from_settings(settings)`, and `card`, which
    needs no settings, only the database its tasks go to. A worker calls this rather than
    `channels_from_settings` itself."""
    return {**channels_from_settings(settings), "card": CardChannel(db)}


def _postal_lines(recipient: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in recipient.splitlines() if line.strip())


def _postal_problem(recipient: str) -> str | None:
    if not _postal_lines(recipient):
        return "recipient: the postal block is empty; a card needs at least the name, then the address, one line each"
    return None


def _make_task(uow: UnitOfWork, message: Message, now: datetime) -> int:
    insert: Any = postgresql.insert(_tasks) if uow.dialect == "postgresql" else sqlite.insert(_tasks)
    statement = (
        insert.values(message_id=message.id, case_id=message.case_id, customer_id=message.customer_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(_tasks.c.id)
    )
    made = uow.execute(statement).scalar_one_or_none()
    if made is not None:
        return int(made)
    return int(uow.execute(sa.select(_tasks.c.id).where(_tasks.c.message_id == message.id)).scalar_one())


# --- reading ---------------------------------------------------------------------------------------------


def get_card_task(uow: UnitOfWork, task_id: int) -> CardTask:
    """The card task with this id; NotFound if there is none."""
    row = uow.execute(_select().where(_tasks.c.id == task_id)).first()
    if row is None:
        raise NotFound(f"no card task {task_id}")
    return _task_from_row(row)


def list_card_tasks(
    uow: UnitOfWork, *, state: CardState | str = CardState.TO_WRITE, limit: int = 100, cursor: str | None = None
) -> tuple[list[CardTask], str | None]:
    """One page of card tasks in `state` (`to_write`, `written`, `posted`, or `all`), oldest first by
    (created_at, id), the order the queue is worked in, and the cursor of the next page (None on the last).
    InvalidInput for an unknown state, a limit outside 1..1000 or a cursor not from a previous page."""
    if not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {_MAX_LIMIT}, got {limit}")
    query = _select()
    if state != "all":
        query = query.where(*_in_state(_state(state)))
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                _tasks.c.created_at > after_time,
                sa.and_(_tasks.c.created_at == after_time, _tasks.c.id > after_id),
            )
        )
    rows = uow.execute(query.order_by(_tasks.c.created_at, _tasks.c.id).limit(limit + 1)).all()
    page = [_task_from_row(row) for row in rows[:limit]]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return page, next_cursor


def _select() -> sa.Select[Any]:
    m = _messages
    return sa.select(_tasks, m.c.kind, m.c.recipient, m.c.subject, m.c.text).join(m, m.c.id == _tasks.c.message_id)


def _state(value: CardState | str) -> CardState:
    try:
        return CardState(value)
    except ValueError:
        allowed = ", ".join([*(state.value for state in CardState), "all"])
        raise InvalidInput("state", f"expected one of {allowed}; got {value!r}") from None


def _in_state(state: CardState) -> list[sa.ColumnElement[bool]]:
    t = _tasks.c
    if state is CardState.TO_WRITE:
        return [t.written_at.is_(None), t.posted_at.is_(None)]
    if state is CardState.WRITTEN:
        return [t.written_at.is_not(None), t.posted_at.is_(None)]
    return [t.posted_at.is_not(None)]


# --- marking ---------------------------------------------------------------------------------------------


def mark_printed(uow: UnitOfWork, task_ids: Sequence[int], *, by: Actor, now: datetime) -> list[CardTask]:
    """Record that these tasks were printed (on a print sheet), audited as `card.printed`, and return them in
    the order given. The first printing is kept: printing again (a jammed printer) changes nothing stored.
    NotFound, and nothing marked, if any id names no task."""
    wanted = list(dict.fromkeys(task_ids))
    tasks = {task.id: task for task in _load(uow, wanted)}
    uow.execute(sa.update(_tasks).where(_tasks.c.id.in_(wanted), _tasks.c.printed_at.is_(None)).values(printed_at=now))
    for task_id in wanted:
        audit(
            uow,
            by,
            "card.printed",
            f"card:{task_id}",
            at=now,
            sheet=len(wanted),
            again=tasks[task_id].printed_at is not None,
        )
    return _load(uow, wanted)


def mark_written(uow: UnitOfWork, task_id: int, *, by: Actor, now: datetime) -> CardTask:
    """Record that the card was written by hand, by whom and when, audited as `card.written`. NotFound for no
    such task; Conflict, naming when and by whom, if it was marked written already."""
    task = get_card_task(uow, task_id)
    if task.written_at is not None:
        raise Conflict(f"card {task_id} was marked written at {_when(task.written_at)} by {task.written_by}")
    changed = uow.execute(
        sa.update(_tasks)
        .where(_tasks.c.id == task_id, _tasks.c.written_at.is_(None))
        .values(written_at=now, written_by=_who(by))
        .returning(_tasks.c.id)
    ).first()
    if changed is None:  # another transaction marked it first
        raise Conflict(f"card {task_id} was marked written meanwhile")
    audit(uow, by, "card.written", f"card:{task_id}", at=now, message_id=task.message_id, case_id=task.case_id)
    return get_card_task(uow, task_id)


def mark_posted(uow: UnitOfWork, task_id: int, *, by: Actor, now: datetime) -> CardTask:
    """Record that the written card was posted, by whom and when, audited as `card.posted`. NotFound for no such
    task; Conflict if it is not written yet, or was marked posted already (naming when and by whom)."""
    task = get_card_task(uow, task_id)
    if task.posted_at is not None:
        raise Conflict(f"card {task_id} was marked posted at {_when(task.posted_at)} by {task.posted_by}")
    if task.written_at is None:
        raise Conflict(f"card {task_id} is not written yet; mark it written before posting it")
    changed = uow.execute(
        sa.update(_tasks)
        .where(_tasks.c.id == task_id, _tasks.c.written_at.is_not(None), _tasks.c.posted_at.is_(None))
        .values(posted_at=now, posted_by=_who(by))
        .returning(_tasks.c.id)
    ).first()
    if changed is None:
        raise Conflict(f"card {task_id} was marked posted meanwhile")
    audit(uow, by, "card.posted", f"card:{task_id}", at=now, message_id=task.message_id, case_id=task.case_id)
    return get_card_task(uow, task_id)


def print_cards(
    db: Database,
    *,
    ids: Sequence[int] | None = None,
    state: CardState | str | None = None,
    limit: int = 50,
    by: Actor,
    now: datetime,
) -> tuple[list[CardTask], bytes]:
    """Print a batch: the tasks named by `ids` (in that order), or the first `limit` in `state` (oldest first).
    Return them, marked printed, and their print sheet.

    The sheet is made first, outside any transaction, and the tasks are marked only once it exists: a sheet that
    could not be made marks nothing, and no lock is held while it is drawn (about 13 ms a card, which on SQLite
    would stall every other writer). InvalidInput naming the field for both or neither of `ids` and `state`, or
    more than 200 cards; NotFound for an unknown id; Conflict when no task is in `state`.
    """
    if (ids is None) == (state is None):
        raise InvalidInput("ids", "give either ids or state, not both and not neither")
    with db.unit_of_work() as uow:
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            if not 1 <= len(wanted) <= _MAX_SHEET:
                raise InvalidInput("ids", f"must name 1 to {_MAX_SHEET} card tasks, got {len(wanted)}")
            chosen = _load(uow, wanted)
        else:
            assert state is not None
            if not 1 <= limit <= _MAX_SHEET:
                raise InvalidInput("limit", f"must be between 1 and {_MAX_SHEET}, got {limit}")
            chosen, _next = list_card_tasks(uow, state=state, limit=limit)
            if not chosen:
                raise Conflict(f"no card task is {state}; there is nothing to print")
    sheet = print_sheet(chosen, now=now)
    with db.unit_of_work(writes=True) as uow:
        marked = mark_printed(uow, [task.id for task in chosen], by=by, now=now)
        uow.commit()
    return marked, sheet


def _load(uow: UnitOfWork, task_ids: list[int]) -> list[CardTask]:
    """The tasks, in the order of `task_ids`; NotFound naming the first id with none."""
    found = {task.id: task for task in map(_task_from_row, uow.execute(_select().where(_tasks.c.id.in_(task_ids))))}
    missing = [task_id for task_id in task_ids if task_id not in found]
    if missing:
        raise NotFound(f"no card task {missing[0]}")
    return [found[task_id] for task_id in task_ids]


def _who(actor: Actor) -> str:
    # A staff member is named by id, as the ledger's `granted_by` is; `staff:<id>` could pass the column's 100.
    return actor.staff.id if actor.staff is not None else actor.label


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _task_from_row(row: sa.Row[Any]) -> CardTask:
    return CardTask(
        id=row.id,
        message_id=row.message_id,
        case_id=row.case_id,
        customer_id=row.customer_id,
        kind=MessageKind(row.kind),
        recipient=row.recipient,
        subject=row.subject,
        text=row.text,
        created_at=row.created_at,
        printed_at=row.printed_at,
        written_at=row.written_at,
        written_by=row.written_by,
        posted_at=row.posted_at,
        posted_by=row.posted_by,
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- printing --------------------------------------------------------------------------------------------

# Noto Sans (OFL-1.1) from the fontpkg-noto-sans package: Latin with its extensions, Greek, Cyrillic and
# Vietnamese. It has no CJK: a character it lacks prints as U+FFFD, and the page says which (docs/outreach-delivery.md).
FONT = ("fontpkg_noto_sans", "files/NotoSans[wdth,wght].ttf")
_FAMILY = "noto-sans"
_MISSING = "\ufffd"
_NO_ADDRESS = "(no postal address on file: ask the customer for one, or hand the card over)"
# A6 landscape, the size of a postcard and of a C6 envelope's card: 148 x 105 mm.
_PAGE_MM = (105.0, 148.0)
_MARGIN_MM = 10.0
_GREY = 110
_HEADING = FontFace(emphasis="", size_pt=8, color=_GREY)


def card_pdf(task: CardTask) -> bytes:
    """The PDF to write one card from: the note, on as many A6 pages as it needs, then a page with the name and
    address for the envelope."""
    with _document(f"amends card {task.id}", created=task.created_at) as pdf:
        _draw_card(pdf, task)
        return bytes(pdf.output())


def print_sheet(tasks: Sequence[CardTask], *, now: datetime) -> bytes:
    """One PDF for a batch of cards: a list of the batch (task, customer, case, heading), then each card as
    `card_pdf` draws it, each starting on a page of its own. `now` is when it was printed, shown on the list."""
    with _document(f"amends cards, {len(tasks)} printed {_when(now)}", created=now) as pdf:
        _draw_sheet(pdf, tasks, now=now)
        return bytes(pdf.output())


def _draw_sheet(pdf: _Document, tasks: Sequence[CardTask], *, now: datetime) -> None:
    pdf.running_head = f"Cards printed {_when(now)}: {len(tasks)}"
    pdf.add_page()
    pdf.set_font(_FAMILY, size=8)
    with pdf.table(
        col_widths=(12, 38, 14, 64),
        headings_style=_HEADING,
        text_align="LEFT",
        line_height=4.2,
        padding=0.8,
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        table.row(["Card", "Customer", "Case", "Heading"])
        for task in tasks:
            case = "" if task.case_id is None else str(task.case_id)
            customer = pdf.printable(f"{task.name} ({task.customer_id})")[0]
            table.row([str(task.id), customer, case, pdf.printable(task.subject)[0]])
    for task in tasks:
        _draw_card(pdf, task)


@contextmanager
def _document(title: str, *, created: datetime) -> Iterator[_Document]:
    pdf = _Document(title, created=created)
    try:
        yield pdf
    finally:
        # fpdf2 reads the font lazily and closes it when the PDF is output; a drawing that failed must not leave
        # the file open.
        for font in pdf.fonts.values():
            if isinstance(font, TTFFont):
                font.close()


class _Document(FPDF):
    """A6 landscape pages in Noto Sans, each with a small grey running head."""

    def __init__(self, title: str, *, created: datetime) -> None:
        super().__init__(orientation="L", unit="mm", format=_PAGE_MM)
        self.running_head = ""
        self.set_margins(_MARGIN_MM, _MARGIN_MM + 2, _MARGIN_MM)
        self.set_auto_page_break(True, margin=_MARGIN_MM)
        self.set_title(title)
        self.set_creator("amends")
        self.set_creation_date(created)  # not the clock: the same card makes the same PDF
        with resources.as_file(resources.files(FONT[0]).joinpath(FONT[1])) as path:
            self.add_font(_FAMILY, "", path)
        font = self.fonts[_FAMILY]
        assert isinstance(font, TTFFont)
        self._covered = frozenset(font.cmap)

    def header(self) -> None:
        if self.running_head:
            self.set_font(_FAMILY, size=7)
            self.set_text_color(_GREY)
            self.set_xy(_MARGIN_MM, _MARGIN_MM - 4)
            self.cell(0, 4, self.printable(self.running_head)[0])
            self.set_xy(self.l_margin, self.t_margin)
            self.set_text_color(0)

    def printable(self, text: str) -> tuple[str, list[str]]:
        """`text` as this font can draw it (NFC, tabs as spaces, each character it lacks as U+FFFD), and the
        code points of the characters it lacked."""
        lacking: list[str] = []
        drawn: list[str] = []
        for char in unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\t", "    "):
            if char == "\n" or ord(char) in self._covered:
                drawn.append(char)
            elif unicodedata.category(char) in ("Cc", "Cf"):
                continue  # control and format characters (zero-width joiners, bidi marks) draw nothing anyway
            else:
                drawn.append(_MISSING)
                if (point := f"U+{ord(char):04X}") not in lacking:
                    lacking.append(point)
        return "".join(drawn), lacking

    def write_block(self, text: str, *, size: float, line_mm: float) -> None:
        self.set_font(_FAMILY, size=size)
        self.multi_cell(0, line_mm, text, align="L", new_x="LMARGIN", new_y="NEXT")

    def write_notice(self, notice: str, *, at_least: float, at_bottom: bool = False) -> None:
        """A small grey note, from `at_least` down, or at the foot of the page when it fits there."""
        self.set_font(_FAMILY, size=7)
        lines = self.multi_cell(0, 3.5, notice, align="L", dry_run=True, output="LINES")
        assert isinstance(lines, list)
        foot = self.h - self.b_margin - 3.5 * len(lines)
        self.set_y(max(at_least, foot) if at_bottom else at_least)
        self.set_text_color(_GREY)
        self.write_block(notice, size=7, line_mm=3.5)
        self.set_text_color(0)


def _draw_card(pdf: _Document, task: CardTask) -> None:
    case = "" if task.case_id is None else f", case {task.case_id}"
    pdf.running_head = f"Card {task.id}{case}, {task.kind.value}: {task.subject}"
    note, note_lacks = pdf.printable(task.text)
    block = task.postal_lines if task.has_address else (*task.postal_lines, _NO_ADDRESS)
    address, address_lacks = pdf.printable("\n".join(block))
    lacking = list(dict.fromkeys(note_lacks + address_lacks + pdf.printable(task.subject)[1]))
    notice = (
        f"{_MISSING} marks characters this font cannot show ({', '.join(lacking)}); the exact text is in the "
        f"card queue, card {task.id}."
        if lacking
        else ""
    )
    pdf.add_page()
    pdf.write_block(note, size=12, line_mm=6.2)
    if notice:
        pdf.write_notice(notice, at_least=pdf.get_y() + 3)
    pdf.running_head = f"Card {task.id}{case}: for the envelope"
    pdf.add_page()
    # Where an address sits on an envelope: below the middle, left of centre.
    pdf.set_y(pdf.h * 0.42)
    pdf.set_left_margin(pdf.w * 0.38)
    pdf.write_block(address, size=12, line_mm=6.0)
    pdf.set_left_margin(_MARGIN_MM)
    if notice:
        pdf.write_notice(notice, at_least=pdf.get_y() + 2, at_bottom=True)
