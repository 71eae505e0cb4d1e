"""Reports render suite, scenario, task, policy and failure-mode names as text, never as markup."""

from __future__ import annotations

import re

from embodia.evaluate.compare import compare_results
from embodia.evaluate.report import write_comparison_report, write_report
from embodia.evaluate.runner import Results

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def _hostile_copy(run: Results, policy: str) -> Results:
    """The run with every name a user or config can choose replaced by an HTML payload."""
    results = Results.from_dict(run.to_dict())
    renamed = {s.name: f"{s.name} {SCRIPT}{IMG} $\\frac$" for s in results.scenarios}  # `$` is not mathtext
    suite_scenarios = [s.model_copy(update={"name": renamed[s.name], "description": IMG}) for s in results.suite.scenarios]
    results.suite = results.suite.model_copy(update={"name": SCRIPT + IMG, "scenarios": suite_scenarios})
    for scenario in results.scenarios:
        scenario.name, scenario.description = renamed[scenario.name], SCRIPT
        scenario.episodes.failure_mode = [IMG if mode else mode for mode in scenario.episodes.failure_mode]
    results.policy = policy
    return results


def _assert_inert(text: str) -> None:
    assert SCRIPT not in text and IMG not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert text.count("<script>") == 1  # the page's own hover-to-play script


def test_run_report_escapes_hostile_names(lqr_run, tmp_path):
    text = write_report(_hostile_copy(lqr_run, IMG + SCRIPT), tmp_path).read_text()
    _assert_inert(text)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text


def test_comparison_report_escapes_hostile_names(lqr_run, tmp_path):
    comparison = compare_results(_hostile_copy(lqr_run, SCRIPT), _hostile_copy(lqr_run, IMG))
    text = write_comparison_report(comparison, tmp_path).read_text()
    _assert_inert(text)


def test_report_videos_load_on_demand(lqr_run, tmp_path):
    text = (lqr_run.out_dir / "report.html").read_text()
    videos = re.findall(r"<video[^>]*>", text)
    assert videos and all('preload="none"' in v and "autoplay" not in v for v in videos)
    assert "white-space:nowrap" in text


def test_reports_say_what_they_show_with_rounded_numbers(lqr_run, tmp_path):
    text = write_report(lqr_run, tmp_path / "run").read_text()
    title = re.search(r"<title>(.*?)</title>", text).group(1)
    assert title.startswith(f"Evaluation of {lqr_run.policy} on suite ") and "scenarios" in title
    cells = re.findall(r'<td class="num">(.*?)</td>', text)
    assert cells and not any(re.search(r"\d\.\d{4,}|e[+-]\d", cell) for cell in cells)  # rounded, never 1e-05
    comparison = write_comparison_report(compare_results(lqr_run, lqr_run), tmp_path / "ab").read_text()
    assert re.search(r"<title>A/B comparison on suite .*gate \w+</title>", comparison)


def test_reports_fit_a_phone_in_chromium_without_errors(lqr_run, tmp_path, phone_browser):
    run = write_report(_hostile_copy(lqr_run, IMG + SCRIPT), tmp_path / "run")
    ab = write_comparison_report(compare_results(_hostile_copy(lqr_run, SCRIPT), _hostile_copy(lqr_run, IMG)),
                                 tmp_path / "ab")
    for page in (run, ab):
        width, errors = phone_browser(page)
        assert width <= 390, f"{page} is {width} px wide on a 390 px phone (the body scrolls sideways)"
        assert errors == []
