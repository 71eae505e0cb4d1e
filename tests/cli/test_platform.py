"""`embodia lineage | artifacts | models | jobs`: tables, JSON lineage, alias moves and one-line errors."""

from __future__ import annotations

import json
import sys
import time

import pytest
from typer.testing import CliRunner

from embodia.cli import app, main
from embodia.core.stage import StageResult, run_stage
from embodia.platform import queue, registry
from embodia.platform.store import open_store


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBODIA_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("EMBODIA_DB_URL", raising=False)
    store = open_store()
    yield store
    store.close()


def _output(tmp_path, name, kind, inputs=None):
    run_stage("train", kind, {"task": "arm-reach"}, tmp_path / name,
              lambda staging, rep: (staging / "f").write_text(name) and StageResult(), inputs=inputs)
    return tmp_path / name


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_lineage_artifacts_and_models_commands(workspace, tmp_path):
    data = registry.register_artifact(workspace, _output(tmp_path, "data", "dataset"))
    model = registry.register_artifact(workspace, _output(tmp_path, "model", "model", {"dataset": tmp_path / "data"}))
    invoke("models", "register", "pick", model.ref)
    out = invoke("models", "alias", "pick", "production", "v1", "--why", "first release")
    assert "model:pick@production -> v1" in out and "first release" in out
    assert "production" in invoke("models", "list")
    assert "dataset:sha256:" in invoke("artifacts", "list", "--kind", "dataset")
    tree = invoke("lineage", "model:pick@production")
    assert data.sha256[:12] in tree and "model:pick@v1" in tree and "dataset =" in tree
    graph = json.loads(invoke("lineage", data.ref, "--json"))
    assert graph["descendants"]["next"][0]["sha256"] == model.sha256
    assert json.loads(invoke("artifacts", "show", data.ref))["sha256"] == data.sha256


def test_jobs_commands(workspace):
    out = invoke("jobs", "submit", "sleep", "--config", '{"seconds": 0.1}', "--priority", "3")
    job = int(out.split()[-1])
    assert "queued" in invoke("jobs", "list")
    assert "cancelled" in invoke("jobs", "cancel", str(job))
    assert "queued" in invoke("jobs", "retry", str(job))
    claim = queue.claim(workspace, "w", lease_s=0.01)
    time.sleep(0.05)
    assert "lease expired" in invoke("jobs", "list")
    claim.log_path.parent.mkdir(parents=True)
    claim.log_path.write_text("hello from the stage\n")
    queue.finish(workspace, job, "w", queue.Outcome("failed", "user", "config field x is bad", 2))
    shown = invoke("jobs", "show", str(job))
    assert "config field x is bad" in shown and "attempts" in shown
    assert "hello from the stage" in invoke("jobs", "logs", str(job), "--follow")


def test_a_job_submitted_with_a_region_keeps_it(workspace):
    out = invoke("jobs", "submit", "noop", "--region", "eu-france")
    assert out.strip().endswith("in region eu-france")
    assert queue.get_job(workspace, int(out.split()[2])).region == "eu-france"


def test_bad_references_are_one_red_line(workspace, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["embodia", "lineage", "model:pick@production"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "model:pick@production does not exist" in capsys.readouterr().err
