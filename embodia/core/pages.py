"""HTML pages rendered from the templates shipped in `embodia/templates`, with autoescaping always on, so no
string from a dataset, suite, policy or config can become markup (names reach the page as text). One environment
serves the static reports and the web console (which adds its own template folder in front): the same document
skeleton, stylesheet, macros and number filters. Numbers read the same everywhere: rounded to a few significant
digits, with units, never wrapped mid-value (templates put them in `<span class="n">`, `white-space: nowrap`).

Public API: render_page(template, **context) -> str, page_environment(extra_dirs=()) -> jinja2.Environment,
FILTERS (number, percent, size, seconds, when, short_sha), literal_text(figure).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
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


def page_environment(extra_dirs: Sequence[Path] = ()):
    """A Jinja2 environment over `extra_dirs` (searched first) and `embodia/templates`, autoescaping, strict
    about undefined names, with FILTERS."""
    import jinja2

    loader = jinja2.ChoiceLoader([*(jinja2.FileSystemLoader(d) for d in extra_dirs),
                                  jinja2.PackageLoader("embodia", "templates")])
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(FILTERS)
    return env


@functools.cache
def _environment():
    return page_environment()


def render_page(template: str, **context: Any) -> str:
    """The text of `template` (a file in embodia/templates) rendered with `context`; every value is escaped."""
    return _environment().get_template(template).render(**context)


def literal_text(figure: Any) -> Any:
    """Make every text of a matplotlib figure literal (names from datasets and suites may hold `$`, which would
    start mathtext and fail to render); returns the figure."""
    from matplotlib.text import Text

    for text in figure.findobj(Text):
        text.set_parse_math(False)
    return figure
