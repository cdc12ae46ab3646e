"""What an item or an event must be to be accepted, from the REST API or from a file.

Every check names the field it refuses; nothing that fails here reaches the store.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.core.records import Event, Item

# 1970 to 2200: anything outside is a unit mistake (milliseconds) or garbage, not an event.
MIN_TS, MAX_TS = 0.0, 7_258_118_400.0
Identifier = Field(min_length=1, max_length=256)
# User ids travel in URL paths: a "/" would make a user that can never be read or deleted.
UserId = Field(min_length=1, max_length=256, pattern=r"^[^/]+$")
# Control characters (C0, DEL, C1) have no place in an id, a title or a category, and NUL
# cannot be stored in a PostgreSQL text column at all: refused on both engines alike. An item's
# text may keep its tabs and line breaks.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _refuse_controls(value: str, pattern: re.Pattern[str] = _CONTROL) -> str:
    found = pattern.search(value)
    if found:
        raise ValueError(
            f"must not contain control characters (U+{ord(found.group()):04X} at {found.start()})"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemIn(_Strict):
    item_id: str = Identifier
    title: str = Field(min_length=1, max_length=1_000)
    text: str = Field(default="", max_length=20_000)
    categories: list[str] = Field(default_factory=list, max_length=50)
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("item_id", "title")
    @classmethod
    def _no_controls(cls, value: str) -> str:
        return _refuse_controls(value)

    @field_validator("text")
    @classmethod
    def _no_controls_but_layout(cls, value: str) -> str:
        return _refuse_controls(value, _CONTROL_IN_TEXT)

    @field_validator("categories")
    @classmethod
    def _no_controls_in_categories(cls, values: list[str]) -> list[str]:
        for value in values:
            _refuse_controls(value)
        return values

    def to_item(self) -> Item:
        return Item(self.item_id, self.title, self.text, tuple(self.categories), self.attributes)


class ItemsIn(_Strict):
    items: list[ItemIn]


class EventIn(_Strict):
    event_id: str | None = Field(default=None, min_length=1, max_length=256)
    user_id: str = UserId
    item_id: str = Identifier
    type: str = Field(min_length=1, max_length=64)
    ts: float | str = Field(description="ISO-8601 date-time or epoch seconds")
    value: float | None = None

    @field_validator("event_id", "user_id", "item_id", "type")
    @classmethod
    def _no_controls(cls, value: str | None) -> str | None:
        return value if value is None else _refuse_controls(value)

    @field_validator("user_id")
    @classmethod
    def _addressable(cls, value: str) -> str:
        if value in {".", ".."}:  # /users/.. is the parent path to every browser and proxy
            raise ValueError("a user id cannot be '.' or '..'")
        return value

    @field_validator("ts", "value", mode="before")
    @classmethod
    def _no_booleans(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true is not a time or a rating
            raise ValueError("must be a number, not a boolean")
        return value

    @field_validator("ts")
    @classmethod
    def _parse_ts(cls, value: float | str) -> float:
        return parse_timestamp(value)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value

    def to_event(self) -> Event:
        assert isinstance(self.ts, float)
        return Event(
            event_id=self.event_id or self.content_id(),
            user_id=self.user_id,
            item_id=self.item_id,
            type=self.type,
            ts=self.ts,
            value=self.value,
        )

    def content_id(self) -> str:
        """An event without an id is identified by its content, so a retried batch is not
        counted twice."""
        key = f"{self.user_id}\x00{self.item_id}\x00{self.type}\x00{self.ts}\x00{self.value}"
        return "h:" + hashlib.sha256(key.encode()).hexdigest()[:24]


class EventsIn(_Strict):
    events: list[EventIn]


def parse_timestamp(value: float | str) -> float:
    if isinstance(value, str):
        try:
            return parse_timestamp(float(value))
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                "ts must be ISO-8601 (2024-05-01T12:00:00Z) or epoch seconds"
            ) from None
        if parsed.tzinfo is None:  # a naive time is taken as UTC, the only sane server default
            parsed = parsed.replace(tzinfo=timezone.utc)
        value = parsed.timestamp()
    if not math.isfinite(value) or not MIN_TS <= value <= MAX_TS:
        raise ValueError("ts must be between 1970-01-01 and 2200-01-01 (epoch seconds, not ms)")
    return float(value)
