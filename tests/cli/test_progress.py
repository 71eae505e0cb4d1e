"""The CLI's Rich reporter implements the core Reporter protocol and renders stage progress."""

import io

import pytest

from rich.console import Console

from embodia.cli.progress import RichReporter
from embodia.core.errors import Cancelled
from embodia.core.reporter import Reporter, check_cancelled


def test_rich_reporter_is_a_reporter_and_shows_progress_and_finite_metrics():
    buffer = io.StringIO()
    reporter = RichReporter(Console(file=buffer, force_terminal=False, width=120))
    assert isinstance(reporter, Reporter)
    reporter.start("train", total=10, unit="steps")
    reporter.update(4, metrics={"loss": 0.25, "return": float("nan")})
    reporter.update(10, message="done")
    reporter.log("wrote checkpoint")
    reporter.finish()
    text = buffer.getvalue()
    assert "train" in text and "10/10" in text and "loss 0.25" in text and "wrote checkpoint" in text
    assert "nan" not in text.lower()


def test_rich_reporter_cancel_is_seen_by_check_cancelled():
    reporter = RichReporter(enabled=False)
    check_cancelled(reporter)  # not cancelled: no error
    reporter.cancel()
    assert reporter.cancelled()
    with pytest.raises(Cancelled):
        check_cancelled(reporter)
