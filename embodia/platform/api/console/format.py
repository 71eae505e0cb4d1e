"""Readable numbers for console pages: rounded to a few significant digits, with units, never wrapped mid-value
(templates render them inside `<span class="n">`, which is `white-space: nowrap`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def number(value: Any, unit: str = "", digits: int = 3) -> str:
    """`value` to `digits` significant digits with thousands separators and `unit`; '–' when missing or not
    finite (NaN and inf never reach a page as numbers)."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(value):
        return "–"
    text = _significant(value, digits)
    return f"{text}\u202f{unit}" if unit else text


def _significant(value: float, digits: int) -> str:
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    if decimals == 0:
        return f"{round(value):,}"
    return f"{value:,.{decimals}f}".rstrip("0").rstrip(".")


def percent(value: Any) -> str:
    """A fraction in [0, 1] as a percentage with one decimal."""
    if value is None:
        return "–"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{100 * value:.1f}\u202f%" if math.isfinite(value) else "–"


def size(value: Any) -> str:
    """Bytes in B/KiB/MiB/GiB."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(amount) or amount < 0:
        return "–"
    for unit in SIZE_UNITS:
        if amount < 1024 or unit == SIZE_UNITS[-1]:
            return number(amount, unit) if unit != "B" else f"{int(amount):,}\u202fB"
        amount /= 1024
    return "–"


def seconds(value: Any) -> str:
    """A duration: ms under a second, s under two minutes, then min and h."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(amount):
        return "–"
    if amount < 1:
        return number(amount * 1000, "ms")
    if amount < 120:
        return number(amount, "s")
    if amount < 7200:
        return number(amount / 60, "min")
    return number(amount / 3600, "h")


def when(value: Any) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM UTC`."""
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def short_sha(value: Any) -> str:
    """The first 12 hex digits of a sha256."""
    return str(value or "")[:12]


FILTERS = {"number": number, "percent": percent, "size": size, "seconds": seconds, "when": when,
           "short_sha": short_sha}
