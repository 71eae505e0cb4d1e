"""`make demo`'s command end to end: the quickstart pipeline runs, registers and serves, then is all cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


def _embodia(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, EMBODIA_HOME=str(cwd / ".embodia"))
    return subprocess.run([sys.executable, "-m", "embodia", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)


def _kinds(node: object) -> set[str]:
    """Every artifact kind named anywhere in a lineage tree (JSON)."""
    if isinstance(node, dict):
        return ({node["kind"]} if "kind" in node else set()) | set().union(*(_kinds(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_kinds(v) for v in node))
    return set()


@pytest.mark.slow
def test_quickstart_runs_serves_and_is_cached_the_second_time(tmp_path: Path) -> None:
    first = _embodia("quickstart", "--out", "out/quickstart", cwd=tmp_path)
    try:
        assert first.returncode == 0, first.stderr[-3000:]
        summary = json.loads((tmp_path / "out/quickstart/summary.json").read_text())
        assert [step["status"] for step in summary.values()] == ["ran"] * len(summary)
        assert {"generate", "train", "export", "evaluate", "gate", "register", "deploy"} <= {
            step["type"] for step in summary.values()}
        report = Path(summary["evaluate"]["artifact"]) / "report.html"
        assert report.is_file() and "<html" in report.read_text()
        url = summary["serve"]["message"].split()[0]
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        lineage = _embodia("lineage", "model:pick@production", "--json", cwd=tmp_path)
        assert lineage.returncode == 0, lineage.stderr
        assert "dataset" in _kinds(json.loads(lineage.stdout)["ancestors"])  # the deployed model traces to its data

        second = _embodia("quickstart", "--out", "out/quickstart", cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        summary = json.loads((tmp_path / "out/quickstart/summary.json").read_text())
        assert [step["status"] for step in summary.values()] == ["cached"] * len(summary)
    finally:
        _embodia("deployments", "stop", "quickstart", cwd=tmp_path)
