"""Segment HTTP Tracking API messages: reading the body safely, the write key, and per-message validation.

Limits follow Segment's: 32 KB per message, 500 KB per batch, counted after gzip decompression, which is
streamed with a cap so a small compressed bomb cannot blow up memory.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import re
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from storefunnel.errors import AppError, TooLarge

KB = 1024
MAX_MESSAGE_BYTES = 32 * KB
MAX_BATCH_BYTES = 500 * KB
MAX_ID_LENGTH = 128
TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
TOUCH_TYPES = frozenset({"track", "page", "screen"})
# Parts of a message that change between retries of the same message and so stay out of its derived id.
VOLATILE_KEYS = frozenset({"sentAt", "writeKey", "receivedAt"})
OBJECT_FIELDS = ("context", "properties", "traits", "integrations")
# JSON can carry a NUL character only as this escape (a raw control byte is malformed JSON), so a body without it
# holds none and its messages need no walk.
NUL_ESCAPE = b"\\u0000"
# PostgreSQL text and jsonb refuse NUL; no UTF-8 encoder accepts an unpaired surrogate half.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
NUL_REASON = "must not contain NUL (\\u0000) characters"
SURROGATE_REASON = "must not contain unpaired surrogates (\\ud800-\\udfff)"
MAX_PATH_KEY = 64
INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson reads as an integer; beyond, it reads a float


class BadRequest(AppError):
    """400 naming the field, the status Segment clients expect for a message they must not retry."""

    status, code, title = 400, "bad-request", "Bad request"


class MessageError(Exception):
    """One message is invalid: which field, and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = str(self)


@dataclass(slots=True)
class Message:
    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    occurred_at: dt.datetime
    body: dict[str, Any]


def limit_text(limit: int) -> str:
    return f"{limit // KB} KB"


async def read_body(chunks: AsyncIterator[bytes], encoding: str, declared_length: str | None, limit: int) -> bytes:
    """The request body, decompressed if gzip, refusing (413) as soon as it grows past ``limit`` bytes."""
    too_large = TooLarge(f"body: the request is larger than the {limit_text(limit)} limit")
    if declared_length and declared_length.isdigit() and encoding != "gzip" and int(declared_length) > limit:
        raise too_large
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    if encoding not in ("", "identity", "gzip"):
        raise BadRequest(f"Content-Encoding: {encoding!r} is not supported; send gzip or no encoding")
    raw_seen = 0
    try:
        async for chunk in chunks:
            raw_seen += len(chunk)
            if raw_seen > limit:
                raise too_large
            if inflater is None:
                out += chunk
            else:
                # max_length bounds each step's output, so a bomb is stopped after at most limit+1 bytes.
                data = chunk
                while data:
                    out += inflater.decompress(data, limit + 1 - len(out))
                    if len(out) > limit:
                        raise too_large
                    data = inflater.unconsumed_tail
            if len(out) > limit:
                raise too_large
        if inflater is not None:
            out += inflater.flush()
            if len(out) > limit:
                raise too_large
            if not inflater.eof:
                raise BadRequest("body: the gzip stream is truncated")
    except zlib.error as exc:
        raise BadRequest(f"body: not valid gzip ({exc})") from None
    return bytes(out)


@dataclass(slots=True)
class Body:
    """A parsed request body, and whether its messages may hold text no database can store (then each is walked)."""

    data: dict[str, Any]
    hostile: bool


def _int(text: str) -> int | float:
    value = int(text)
    return value if INT_RANGE[0] <= value <= INT_RANGE[1] else float(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is infinite")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _lenient(body: bytes) -> Any:
    """Read JSON the way orjson does, except that an escaped unpaired surrogate is kept (to be reported per message)."""
    # Decoding first keeps orjson's refusal of anything but UTF-8 (json.loads would guess UTF-16 or UTF-32).
    return json.loads(body.decode("utf-8"), parse_int=_int, parse_float=_finite, parse_constant=_no_constant)


def parse_json(body: bytes) -> Body:
    if not body.strip():
        raise BadRequest("body: empty; send a JSON object")
    hostile = NUL_ESCAPE in body
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson refuses a whole body for one escaped lone surrogate (a string cut in the middle of an emoji);
        # reading it leniently lets a batch keep its good messages and name the bad one.
        if "surrogate" not in str(exc):
            raise BadRequest(f"body: malformed JSON ({exc})") from None
        try:
            data = _lenient(body)
        except ValueError:
            raise BadRequest(f"body: malformed JSON ({exc})") from None
        hostile = True
    if not isinstance(data, dict):
        raise BadRequest("body: must be a JSON object")
    return Body(data, hostile)


def unstorable_text(value: str) -> str | None:
    """Why ``value`` cannot be stored as text (NUL, unpaired surrogate), or None."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return NUL_REASON if found.group() == "\x00" else SURROGATE_REASON


def _key_path(path: str, key: str) -> str:
    name = key if len(key) <= MAX_PATH_KEY else key[:MAX_PATH_KEY] + "…"
    return f"{path}.{name}" if path else name


def find_unstorable(value: Any, path: str = "") -> tuple[str, str] | None:
    """The first string (or object key) in ``value`` that cannot be stored: its field path and why, or None."""
    if isinstance(value, str):
        reason = unstorable_text(value)
        return (path, reason) if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            reason = unstorable_text(key)
            if reason:
                return (path, f"keys {reason}") if path else ("", f"field names {reason}")
            found = find_unstorable(item, _key_path(path, key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_unstorable(item, f"{path}[{index}]")
            if found:
                return found
    return None


def write_key_from(authorization: str | None, body: Mapping[str, Any]) -> str | None:
    """Segment sends the write key as the HTTP Basic username with an empty password, or as ``writeKey``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic" and value.strip():
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[0] or None
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = body.get("writeKey")
    return key if isinstance(key, str) and key else None


def parse_time(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str):
        raise MessageError(field, "must be an ISO-8601 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise MessageError(field, f"{value[:40]!r} is not an ISO-8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _id(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MessageError(field, "must be a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise MessageError(field, f"longer than {MAX_ID_LENGTH} characters")
    return text


def derived_message_id(body: Mapping[str, Any]) -> str:
    """A message without ``messageId`` is keyed by a hash of its content, so its retries are still one."""
    stable = {k: v for k, v in body.items() if k not in VOLATILE_KEYS}
    return "h-" + hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()


def occurred_at(body: Mapping[str, Any], received_at: dt.datetime, batch_sent_at: Any) -> dt.datetime:
    """Segment's clock-skew correction: ``timestamp + (receivedAt - sentAt)`` when the client sent ``sentAt``."""
    raw = body.get("timestamp")
    field = "timestamp"
    if raw is None:
        raw, field = body.get("originalTimestamp"), "originalTimestamp"
    if raw is None:
        return received_at
    when = parse_time(raw, field)
    sent_raw = body.get("sentAt", batch_sent_at)
    if sent_raw is None:
        return when
    sent = parse_time(sent_raw, "sentAt")
    try:
        return when + (received_at - sent)
    except OverflowError:
        raise MessageError("sentAt", "the clock-skew correction is out of range") from None


def parse_message(
    body: Any,
    kind: str | None,
    received_at: dt.datetime,
    batch_sent_at: Any = None,
    *,
    check_size: bool = False,
    hostile: bool = False,
) -> Message:
    """Validate one message; raises MessageError naming the field.

    ``hostile``: the body may hold NUL or unpaired surrogates (see :class:`Body`), so every string is checked first.
    """
    if not isinstance(body, dict):
        raise MessageError("", "each message must be a JSON object")
    if hostile:
        found = find_unstorable(body)
        if found is not None:
            raise MessageError(*found)
    if check_size and len(orjson.dumps(body)) > MAX_MESSAGE_BYTES:
        raise MessageError("", f"message is larger than the {limit_text(MAX_MESSAGE_BYTES)} per-message limit")
    type_ = kind or body.get("type")
    if not isinstance(type_, str) or type_ not in TYPES:
        raise MessageError("type", f"must be one of {', '.join(sorted(TYPES))}")
    user_id = _id(body.get("userId"), "userId")
    anonymous_id = _id(body.get("anonymousId"), "anonymousId")
    if user_id is None and anonymous_id is None:
        raise MessageError("userId", "a userId or an anonymousId is required")
    for name in OBJECT_FIELDS:
        if name in body and body[name] is not None and not isinstance(body[name], dict):
            raise MessageError(name, "must be a JSON object")
    if type_ == "track":
        event = body.get("event")
        if not isinstance(event, str) or not event.strip():
            raise MessageError("event", "a track call needs the event name as a non-empty string")
    elif type_ in ("page", "screen"):
        for name in ("name", "category"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise MessageError(name, "must be a string")
    elif type_ == "group":
        if _id(body.get("groupId"), "groupId") is None:
            raise MessageError("groupId", "a group call needs a groupId")
    elif type_ == "alias":
        if _id(body.get("previousId"), "previousId") is None:
            raise MessageError("previousId", "an alias call needs the previousId")
        if user_id is None:
            raise MessageError("userId", "an alias call needs the userId")
    message_id = _id(body.get("messageId"), "messageId") or derived_message_id(body)
    return Message(type_, message_id, user_id, anonymous_id, occurred_at(body, received_at, batch_sent_at), body)
