"""Customers' emails as inbound-mail providers post them, made into one value, InboundEmail: Postmark's JSON,
Mailgun's route form, SendGrid's Inbound Parse form, or the raw message (RFC 822).

Each parser checks what it reads and raises InvalidInput naming the provider's own field. The reply is the text
without the quoted original: the provider's stripped text where it gives one, else what `reply_text` cuts.
Nothing here touches the database (replies.py stores the result); attachments are named and measured, not kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from email import policy
from email.errors import MessageError
from email.headerregistry import AddressHeader
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from enum import StrEnum
from html.parser import HTMLParser
from typing import Any, overload
from urllib.parse import unquote_to_bytes

import orjson
from mailparser_reply import EmailReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES

from amends.errors import InvalidInput

__all__ = [
    "ACCEPTED_MEDIA",
    "Attachment",
    "InboundEmail",
    "InboundProvider",
    "message_ids",
    "parse_inbound",
    "parse_postmark",
    "parse_rfc822",
    "reply_text",
]

_MAX_IDS = 100  # References grows with the thread; the latest ids are the ones that can be ours
_MAX_ID_CHARS = 500  # messages.provider_id is at most this long
_MSG_ID = re.compile(r"<[^<>\s]+>")
# The languages mail-parser-reply knows the reply headers of ("On … wrote:", "Am … schrieb …:"): all of them,
# since a reply is parsed before we know whose it is. Its entries that are not languages (a product) are left out.
_LANGUAGES = sorted(code for code in MAIL_LANGUAGES if len(code) == 2)


class InboundProvider(StrEnum):
    POSTMARK = "postmark"
    MAILGUN = "mailgun"
    SENDGRID = "sendgrid"
    RFC822 = "rfc822"  # the message itself, as a mail server or a provider's raw mode passes it on


# The media types each provider posts: Mailgun sends a multipart form only when the email has attachments.
ACCEPTED_MEDIA: Mapping[InboundProvider, tuple[str, ...]] = {
    InboundProvider.POSTMARK: ("application/json",),
    InboundProvider.MAILGUN: ("application/x-www-form-urlencoded", "multipart/form-data"),
    InboundProvider.SENDGRID: ("multipart/form-data",),
    InboundProvider.RFC822: ("message/rfc822",),
}


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str
    size: int  # bytes, as the provider gave them (decoded where we decoded them)


@dataclass(frozen=True, slots=True)
class InboundEmail:
    """One email a customer sent us. Message-IDs keep their angle brackets (`<abc@example.com>`), as a
    Message-ID header and `messages.provider_id` write them."""

    provider: InboundProvider
    from_address: str
    from_name: str | None
    subject: str
    text: str  # the whole text, the quoted original included
    reply: str  # the text without the quoted original
    html: str | None
    message_id: str | None  # the email's own
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()  # oldest first, as the header lists them
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()
    provider_id: str | None = None  # the provider's own id for the email (Postmark's MessageID): steady on a retry


def parse_inbound(provider: InboundProvider, body: bytes, content_type: str) -> InboundEmail:
    """The email in a provider's post, whose media type is one of ACCEPTED_MEDIA[provider]. InvalidInput names
    the field that is missing or garbled (`body` when the body itself cannot be read)."""
    media = content_type.partition(";")[0].strip().lower()
    if provider is InboundProvider.POSTMARK:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput("body", f"not JSON: {exc}") from None
        return parse_postmark(document)
    if provider is InboundProvider.RFC822:
        return parse_rfc822(body)
    form = _multipart(body, content_type) if media == "multipart/form-data" else _urlencoded(body)
    if provider is InboundProvider.MAILGUN:
        return _mailgun(form)
    return _sendgrid(form)


# --- Postmark --------------------------------------------------------------------------------------------


def parse_postmark(document: Any) -> InboundEmail:
    """Postmark's inbound webhook JSON: FromFull (or From), Subject, TextBody, HtmlBody, StrippedTextReply,
    MessageID (Postmark's id), Headers as [{Name, Value}] (In-Reply-To, References and Message-ID among them),
    Attachments as [{Name, ContentType, ContentLength}]."""
    if not isinstance(document, dict):
        raise InvalidInput("body", f"expected a JSON object, got {_kind(document)}")
    full = document.get("FromFull")
    if full is not None and not isinstance(full, dict):
        raise InvalidInput("FromFull", f"expected an object with Email and Name, got {_kind(full)}")
    if full and full.get("Email"):
        address, name = _address(_string(full, "Email", "FromFull."), "FromFull.Email")
        name = _optional_string(full, "Name", "FromFull.") or name
    else:
        address, name = _address(_string(document, "From"), "From")
    headers = _postmark_headers(document.get("Headers"))
    text = _optional_string(document, "TextBody") or ""
    html = _optional_string(document, "HtmlBody") or None
    return _email(
        InboundProvider.POSTMARK,
        address=address,
        name=name,
        subject=_optional_string(document, "Subject") or "",
        text=text,
        html=html,
        stripped=_optional_string(document, "StrippedTextReply"),
        headers=headers,
        attachments=_postmark_attachments(document.get("Attachments")),
        provider_id=_optional_string(document, "MessageID") or None,
    )


def _postmark_headers(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput("Headers", f"expected a list of {{Name, Value}}, got {_kind(value)}")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput(f"Headers[{index}]", f"expected an object with Name and Value, got {_kind(item)}")
        pairs.append(
            (_string(item, "Name", f"Headers[{index}]."), _optional_string(item, "Value", f"Headers[{index}]."))
        )
    return tuple(pairs)


def _postmark_attachments(value: Any) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput("Attachments", f"expected a list, got {_kind(value)}")
    found: list[Attachment] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput(f"Attachments[{index}]", f"expected an object, got {_kind(item)}")
        size = item.get("ContentLength", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"Attachments[{index}].ContentLength", "expected a whole number of bytes")
        name = _optional_string(item, "Name", f"Attachments[{index}].")
        found.append(Attachment(name, _optional_string(item, "ContentType", f"Attachments[{index}]."), size))
    return tuple(found)


# --- Mailgun ---------------------------------------------------------------------------------------------


def _mailgun(form: _Form) -> InboundEmail:
    """A Mailgun route's forward(): `from` (else `sender`), `subject`, `body-plain` (always sent),
    `body-html`, `stripped-text`, the headers as fields of their own (`Message-Id`, `In-Reply-To`,
    `References`) and all of them in `message-headers`, a JSON list of [name, value] pairs."""
    header_list = _mailgun_headers(form.text("message-headers"))
    sender = form.text("from") or form.text("sender")
    if sender is None:
        raise InvalidInput("from", "missing: Mailgun sends the From header as `from`")
    address, name = _address(sender, "from")
    plain = form.text("body-plain")
    if plain is None:
        raise InvalidInput("body-plain", "missing: Mailgun sends the text of every email as `body-plain`")
    # The headers Mailgun also posts as fields of their own, for a payload without `message-headers`.
    known = {name.lower() for name, _value in header_list}
    for field_name in ("Message-Id", "In-Reply-To", "References"):
        value = form.text(field_name)
        if value is not None and field_name.lower() not in known:
            header_list.append((field_name, value))
    return _email(
        InboundProvider.MAILGUN,
        address=address,
        name=name,
        subject=form.text("subject") or "",
        text=plain,
        html=form.text("body-html") or None,
        stripped=form.text("stripped-text"),
        headers=tuple(header_list),
        attachments=form.files,
    )


def _mailgun_headers(value: str | None) -> list[tuple[str, str]]:
    if value is None:
        return []
    try:
        pairs = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("message-headers", f"not JSON: {exc}") from None
    if not isinstance(pairs, list):
        raise InvalidInput("message-headers", f"expected a list of [name, value] pairs, got {_kind(pairs)}")
    headers: list[tuple[str, str]] = []
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise InvalidInput(f"message-headers[{index}]", "expected a [name, value] pair of strings")
        headers.append((pair[0], pair[1]))
    return headers


# --- SendGrid --------------------------------------------------------------------------------------------


def _sendgrid(form: _Form) -> InboundEmail:
    """SendGrid's Inbound Parse: `from`, `subject`, `text`, `html`, `headers` (the raw header block), in the
    character sets `charsets` names for each field (a JSON object). With "POST the raw, full MIME message" it
    sends `email`, the message itself, instead."""
    raw = form.raw("email")
    if raw is not None:
        return replace(parse_rfc822(raw), provider=InboundProvider.SENDGRID)
    charsets = _sendgrid_charsets(form.text("charsets"))
    form = form.decoded_with(charsets)
    sender = form.text("from")
    if sender is None:
        raise InvalidInput("from", "missing: SendGrid sends the From header as `from`")
    address, name = _address(sender, "from")
    block = form.raw("headers")
    if block is None:
        raise InvalidInput("headers", "missing: SendGrid sends the email's header block as `headers`")
    parsed = BytesHeaderParser(policy=policy.default).parsebytes(block.strip() + b"\r\n\r\n")
    return _email(
        InboundProvider.SENDGRID,
        address=address,
        name=name,
        subject=form.text("subject") or "",
        text=form.text("text") or "",
        html=form.text("html") or None,
        stripped=None,
        headers=_header_pairs(parsed),
        attachments=form.files,
    )


def _sendgrid_charsets(value: str | None) -> dict[str, str]:
    if value is None:
        return {}
    try:
        charsets = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("charsets", f"not JSON: {exc}") from None
    if not isinstance(charsets, dict) or not all(isinstance(v, str) for v in charsets.values()):
        raise InvalidInput("charsets", "expected an object naming each field's character set")
    return {str(k): v for k, v in charsets.items()}


# --- the message itself (RFC 822) ------------------------------------------------------------------------


def parse_rfc822(raw: bytes) -> InboundEmail:
    """An email as it travelled (RFC 5322 with MIME), read with the standard library's `email` package."""
    if not raw.strip():
        raise InvalidInput("body", "empty: expected an email message")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except (MessageError, ValueError) as exc:  # the parser records defects; these are the cases it gives up
        raise InvalidInput("body", f"not an email message: {exc}") from None
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    sender = _decoded(message, "From")
    if sender is None:
        raise InvalidInput("From", "missing: an email names its sender in the From header")
    address, name = _address(sender, "From")
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    return _email(
        InboundProvider.RFC822,
        address=address,
        name=name,
        subject=_decoded(message, "Subject") or "",
        text=_content(text_part) if text_part is not None else "",
        html=_content(html_part) if html_part is not None else None,
        stripped=None,
        headers=_header_pairs(message),
        attachments=_attachments_of(message),
    )


def _content(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]  # EmailMessage under policy.default
    except (LookupError, UnicodeError, MessageError, ValueError):
        # A charset Python does not know, or a part that lies about its encoding: keep what can be read.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _attachments_of(message: EmailMessage) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart() or (part.get_filename() is None and part.get_content_disposition() != "attachment"):
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        found.append(Attachment(part.get_filename() or "", part.get_content_type(), size))
    return tuple(found)


def _header_pairs(message: Message) -> tuple[tuple[str, str], ...]:
    """Every header in order, repeats included, as it came (unfolded; RFC 2047 words left encoded)."""
    return tuple((name, _clean(_FOLD.sub("", value)).strip()) for name, value in message.raw_items())


def _decoded(message: Message, name: str) -> str | None:
    """A header's value with RFC 2047 words decoded; None when it is absent."""
    try:
        value = message.get(name)
        return None if value is None else _clean(str(value))
    except (ValueError, IndexError, TypeError) as exc:  # the header parser gives up on a few malformed values
        raise InvalidInput(name, f"cannot be read: {exc}") from None


def _clean(text: str) -> str:
    # The parser keeps bytes that are not ASCII as surrogates; JSON and the database take only real characters.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


_FOLD = re.compile(r"\r?\n(?=[ \t])")


# --- the reply -------------------------------------------------------------------------------------------


def reply_text(text: str) -> str:
    """The reply without the quoted original.

    mail-parser-reply cuts at the header a mail client writes above the quote ("On … wrote:", "-----Original
    Message-----", Outlook's "From: … Sent: …", in the languages it knows). A quote still left at the end (lines
    starting with ">", and the one line ending in ":" that introduces them) is cut too: clients write "wrote:"
    in more languages than any list holds. Quotes between the customer's own lines (an answer written inline)
    are kept. A reply that would be left empty is the whole text.
    """
    whole = text.replace("\r\n", "\n").strip()
    if not whole:
        return ""
    latest = EmailReplyParser(languages=list(_LANGUAGES)).parse_reply(whole)
    cut = _without_trailing_quote(latest if isinstance(latest, str) else whole)
    return cut if cut else whole


def _without_trailing_quote(text: str) -> str:
    lines = text.strip().split("\n")
    start = len(lines)
    while start > 0 and (lines[start - 1].lstrip().startswith(">") or not lines[start - 1].strip()):
        start -= 1
    if start == len(lines):
        return text.strip()
    if start > 0 and lines[start - 1].rstrip().endswith(":"):
        start -= 1
    return "\n".join(lines[:start]).strip()


def message_ids(value: str | None) -> tuple[str, ...]:
    """The Message-IDs a header names (In-Reply-To, References), with their angle brackets, at most the last
    100. A bare id without brackets (some clients write one) gets them."""
    if not value:
        return ()
    found = _MSG_ID.findall(value)
    if not found:
        bare = value.strip()
        found = [f"<{bare}>"] if "@" in bare and not any(c.isspace() for c in bare) else []
    return tuple(found[-_MAX_IDS:])


def _email(
    provider: InboundProvider,
    *,
    address: str,
    name: str | None,
    subject: str,
    text: str,
    html: str | None,
    stripped: str | None,
    headers: tuple[tuple[str, str], ...],
    attachments: tuple[Attachment, ...],
    provider_id: str | None = None,
) -> InboundEmail:
    # NUL is text to Python and to email, but PostgreSQL keeps no NUL in text or JSON: it goes, here, once.
    text, html, stripped = _no_nul(text), _no_nul(html), _no_nul(stripped)
    headers = tuple((_no_nul(name) or "", _no_nul(value) or "") for name, value in headers)
    if not text.strip() and html:  # an email with HTML only
        text = _text_of_html(html)
    reply = stripped.replace("\r\n", "\n").strip() if stripped and stripped.strip() else reply_text(text)
    own = message_ids(_header(headers, "Message-ID"))
    return InboundEmail(
        provider=provider,
        from_address=address,
        from_name=_no_nul(name),
        subject=" ".join((_no_nul(subject) or "").split()),  # unfolded: a subject is one line
        text=text,
        reply=reply,
        html=html,
        message_id=own[0] if own else None,
        in_reply_to=_ours_or_none(message_ids(_header(headers, "In-Reply-To"))),
        references=_ours_or_none(message_ids(_header(headers, "References"))),
        headers=headers,
        attachments=tuple(Attachment(_no_nul(a.name) or "", a.content_type, a.size) for a in attachments),
        provider_id=_no_nul(provider_id),
    )


@overload
def _no_nul(text: str) -> str: ...
@overload
def _no_nul(text: None) -> None: ...
def _no_nul(text: str | None) -> str | None:
    return None if text is None else text.replace("\x00", "")


def _ours_or_none(ids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(i for i in ids if len(i) <= _MAX_ID_CHARS)  # longer ones cannot be a provider_id of ours


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name.lower()), None)


# --- fields ----------------------------------------------------------------------------------------------


def _address(value: str, field_name: str) -> tuple[str, str | None]:
    """The address and display name in a From value ("Zoë <zoe@example.com>", RFC 2047 words decoded)."""
    try:
        header = policy.default.header_factory("From", value)
    except (ValueError, IndexError, TypeError) as exc:  # the header parser gives up on a few malformed values
        raise InvalidInput(field_name, f"cannot be read: {exc}") from None
    addresses = header.addresses if isinstance(header, AddressHeader) else ()
    for found in addresses:
        if found.username and found.domain:
            return found.addr_spec, found.display_name or None
    raise InvalidInput(field_name, f"expected an address like Zoë <zoe@example.com>, got {value[:100]!r}")


def _string(document: Mapping[str, Any], name: str, prefix: str = "") -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value.strip():
        reason = "missing" if value is None else f"expected text, got {_kind(value)}"
        raise InvalidInput(f"{prefix}{name}", reason)
    return value


def _optional_string(document: Mapping[str, Any], name: str, prefix: str = "") -> str:
    value = document.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{prefix}{name}", f"expected text, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true or false", type(None): "null"}.get(
        type(value), "a number"
    )


@dataclass(frozen=True)
class _Form:
    """A posted form: each field's values as bytes (decoded on reading, in the field's character set), and the
    files in it, named and measured."""

    fields: Mapping[str, Sequence[bytes]]
    files: tuple[Attachment, ...] = ()
    charsets: Mapping[str, str] = field(default_factory=dict)

    def raw(self, name: str) -> bytes | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        charset = self.charsets.get(name, "utf-8")
        try:
            return value.decode(charset, "replace")
        except LookupError:  # a character set Python does not know: read it as UTF-8 rather than lose it
            return value.decode("utf-8", "replace")

    def decoded_with(self, charsets: Mapping[str, str]) -> _Form:
        return _Form(self.fields, self.files, charsets)


def _urlencoded(body: bytes) -> _Form:
    fields: dict[str, list[bytes]] = {}
    for pair in body.split(b"&"):
        if not pair:
            continue
        name, _sep, value = pair.partition(b"=")
        key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace")
        fields.setdefault(key, []).append(unquote_to_bytes(value.replace(b"+", b" ")))
    return _Form(fields)


def _multipart(body: bytes, content_type: str) -> _Form:
    """A multipart/form-data body (RFC 7578), read with the `email` package: a form's parts are MIME parts."""
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=policy.default).parsebytes(head + body)
    if not message.is_multipart() or not message.get_boundary():
        raise InvalidInput("body", "not a multipart form: the Content-Type names no boundary, or no part was found")
    broken = [d for d in message.defects if type(d).__name__ in _FATAL_DEFECTS]
    if broken:
        raise InvalidInput("body", f"a broken multipart form: {type(broken[0]).__name__}")
    fields: dict[str, list[bytes]] = {}
    files: list[Attachment] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            files.append(Attachment(part.get_filename() or "", part.get_content_type(), len(data)))
        elif isinstance(name, str):
            fields.setdefault(name, []).append(data)
    return _Form(fields, tuple(files))


_FATAL_DEFECTS = frozenset(
    {"StartBoundaryNotFoundDefect", "CloseBoundaryNotFoundDefect", "NoBoundaryInMultipartDefect"}
)


# --- HTML ------------------------------------------------------------------------------------------------


class _HtmlText(HTMLParser):
    """The text of an HTML email, for one that has no text part: a line per block, quoted blocks as "> "."""

    _BLOCKS = frozenset({"address", "br", "div", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "p", "pre", "tr"})
    _HIDDEN = frozenset({"head", "script", "style", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._words: list[str] = []
        self._quote = 0
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, opening=True)

    def handle_endtag(self, tag: str) -> None:
        self._tag(tag, opening=False)

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._words.extend(data.split())

    def close(self) -> None:
        super().close()
        self._line()

    def _tag(self, tag: str, *, opening: bool) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden + (1 if opening else -1))
        elif tag == "blockquote":
            self._line()
            self._quote = max(0, self._quote + (1 if opening else -1))
        elif tag in self._BLOCKS:
            self._line()

    def _line(self) -> None:
        if self._words:
            self.lines.append("> " * self._quote + " ".join(self._words))
        elif self.lines and self.lines[-1]:
            self.lines.append("")
        self._words = []


def _text_of_html(html: str) -> str:
    reader = _HtmlText()
    reader.feed(html)
    reader.close()
    return "\n".join(reader.lines).strip()
