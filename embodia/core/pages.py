"""HTML pages rendered from the templates shipped in `embodia/templates`, with autoescaping always on, so no
string from a dataset, suite, policy or config can become markup (names reach the page as text)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(loader=PackageLoader("embodia", "templates"), autoescape=True, undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


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
