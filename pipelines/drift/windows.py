"""Drift windows: half-open intervals aligned to multiples of their length since the epoch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


_MAX_SECONDS = 366 * 86400


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``1h``, ``2d`` (a positive whole number and one unit) -> timedelta."""
    value = text.strip().lower()
    number = value[:-1]
    if len(value) < 2 or value[-1] not in _UNITS or not (number.isascii() and number.isdigit()) or int(number) <= 0:
        raise ValueError(f"expected a duration like 30s, 15m, 1h or 1d, got {text[:40]!r}")
    if int(number) * _UNITS[value[-1]] > _MAX_SECONDS:
        raise ValueError(f"a window of {text[:40]!r} is longer than a year")
    return timedelta(seconds=int(number) * _UNITS[value[-1]])


@dataclass(frozen=True)
class Window:
    """A half-open interval ``[start, end)`` aligned to multiples of its length since the epoch."""

    start: datetime
    end: datetime

    @property
    def id(self) -> str:
        return f"{self.start.strftime('%Y%m%dT%H%M%SZ')}/{int((self.end - self.start).total_seconds())}s"

    def previous(self, k: int = 1) -> Window:
        length = self.end - self.start
        return Window(self.start - k * length, self.end - k * length)


def latest_complete_window(length: timedelta, now: datetime | None = None) -> Window:
    """The most recent window that has ended by ``now`` (so its data no longer changes)."""
    now = now or datetime.now(UTC)
    seconds = int(length.total_seconds())
    end_epoch = int(now.timestamp()) // seconds * seconds
    end = datetime.fromtimestamp(end_epoch, UTC)
    return Window(end - length, end)
