"""Pipeline runs recorded in the store: a run started with `PipelineRunner` (as `embodia run` does) is recorded
step by step, listed by the API and the console for its project only, still listed by a restarted app, shows as
interrupted when its process stops reporting, and `embodia runs list|show` print it (one-line error otherwise)."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, update
from typer.testing import CliRunner

from embodia.cli import app as cli_app
from embodia.cli import main
from embodia.core.errors import UserError
from embodia.platform import registry, runs
from embodia.platform.api.app import create_app
from embodia.platform.api.auth import create_token
from embodia.platform.models import PipelineRunRecord, utcnow
from embodia.platform.pipeline import load_pipeline, parse_pipeline
from embodia.platform.runner import PipelineRunner
from embodia.platform.store import Store, make_engine, upgrade
from embodia.serve.testing import make_mlp_onnx

BASE = "http://127.0.0.1:8100"


def _model(store: Store, root: Path) -> str:
    """A tiny ONNX policy registered as model toy@v1; returns its reference."""
    folder = root / "model"
    folder.mkdir()
    make_mlp_onnx(folder / "policy.onnx", 21, 3, hidden=(8,), task="arm-reach", seed=1)
    info = registry.register_artifact(store, folder, kind="model")
    return registry.register_model_version(store, "toy", f"sha256:{info.sha256}").ref


def _pipeline_file(tmp_path: Path, model_ref: str, project: str = "alpha") -> Path:
    """A one-step pipeline (register: runs in-process, no job) in `project`."""
    path = tmp_path / "promote.yaml"
    path.write_text(f"name: promote\nproject: {project}\nsteps:\n"
                    f"  promote: {{type: register, inputs: {{model: '{model_ref}'}}, config: {{name: toy2}}}}\n")
    return path


@pytest.fixture
def cli_run(sqlite_store, tmp_path):
    """The store after one run of a pipeline file in project alpha, started as `embodia run` starts it."""
    path = _pipeline_file(tmp_path, _model(sqlite_store, tmp_path))
    results = PipelineRunner(load_pipeline(path), sqlite_store, parallel=1).run()
    assert results["promote"].status == "ran"
    return sqlite_store, results, path


def test_a_runner_records_the_run_and_each_step(store, tmp_path):
    path = _pipeline_file(tmp_path, _model(store, tmp_path))
    pipeline = load_pipeline(path)
    results = PipelineRunner(pipeline, store, parallel=1).run()
    [run] = runs.list_runs(store, "alpha")
    assert (run["name"], run["status"], run["origin"], run["source"]) == ("promote", "succeeded", "cli", str(path))
    assert run["steps"] == {"promote": "ran"} and run["types"] == {"promote": "register"}
    assert run["outputs"]["promote"] == results["promote"].output.sha256
    assert run["messages"]["promote"] == "model:toy2@v1" and run["cached"] == {"promote": False}
    assert run["finished_at"] is not None and run["error"] is None
    with store.read_session() as session:
        record = session.get(PipelineRunRecord, run["id"])
        assert record.yaml_text == path.read_text() and len(record.yaml_sha256) == 64
        step = record.steps[0]
        assert step.artifact_id == registry.get_artifact(store, step.output_sha256).id
        assert step.cache_key == results["promote"].key and step.started_at <= step.finished_at
    assert runs.list_runs(store, "beta") == [] and runs.get_run(store, run["id"], "beta") is None

    again = PipelineRunner(pipeline, store, parallel=1).run()  # the second run is a cache hit, a new record
    assert again["promote"].status == "cached"
    newest, oldest = runs.list_runs(store, "alpha")
    assert newest["id"] > oldest["id"] and newest["cached"] == {"promote": True}
    assert newest["steps"] == {"promote": "cached"} and oldest["steps"] == {"promote": "ran"}


def test_a_dry_run_records_nothing(sqlite_store, tmp_path):
    pipeline = load_pipeline(_pipeline_file(tmp_path, _model(sqlite_store, tmp_path)))
    assert [row.status for row in PipelineRunner(pipeline, sqlite_store).plan()] == ["miss"]
    assert runs.list_runs(sqlite_store) == []


def test_a_run_whose_process_stopped_reporting_is_interrupted(sqlite_store):
    pipeline = parse_pipeline({"name": "p", "project": "alpha", "steps": {
        "a": {"type": "register", "inputs": {"model": "model:x@v1"}, "config": {"name": "y"}}}})
    recorder = runs.RunRecorder(sqlite_store, pipeline)
    run_id = recorder.begin()
    recorder.on_event("a", "start", {"key": "k"})
    assert runs.get_run(sqlite_store, run_id)["status"] == "running"
    with sqlite_store.session() as session:
        session.execute(update(PipelineRunRecord).where(PipelineRunRecord.id == run_id).values(
            heartbeat_at=utcnow() - timedelta(seconds=runs.RUN_STALE_S + 1)))
    run = runs.get_run(sqlite_store, run_id)
    assert run["status"] == "interrupted" and run["steps"] == {"a": "interrupted"}
    assert "stopped reporting" in run["error"]
    recorder.finish(None, KeyboardInterrupt())
    run = runs.get_run(sqlite_store, run_id)
    assert (run["status"], run["steps"]) == ("cancelled", {"a": "cancelled"})


def test_outcome_of_results_and_errors():
    assert runs.outcome({}, None) == ("succeeded", None)
    assert runs.outcome(None, UserError("bad input")) == ("failed", "bad input")
    assert runs.outcome(None, RuntimeError("boom"))[1].startswith("internal error: RuntimeError")


def test_api_and_console_list_a_cli_run_for_its_project_only_even_after_a_restart(cli_run):
    store, results, _ = cli_run
    [run_id] = [run["id"] for run in runs.list_runs(store)]
    alpha, beta = create_token(store, "alpha", "read"), create_token(store, "beta", "read")
    for _restart in range(2):  # a new app over the same workspace is a restarted server
        app = create_app(store, rate_per_minute=10**6)
        client = TestClient(app, base_url=BASE)
        listed = client.get("/api/v1/pipelines/runs", headers={"Authorization": f"Bearer {alpha}"}).json()
        assert [(r["id"], r["status"], r["origin"]) for r in listed] == [(run_id, "succeeded", "cli")]
        assert listed[0]["outputs"] == {"promote": results["promote"].output.sha256}
        one = client.get(f"/api/v1/pipelines/runs/{run_id}", headers={"Authorization": f"Bearer {alpha}"})
        assert one.status_code == 200 and one.json()["steps"] == {"promote": "ran"}
        theirs = {"Authorization": f"Bearer {beta}"}
        assert client.get("/api/v1/pipelines/runs", headers=theirs).json() == []
        assert client.get(f"/api/v1/pipelines/runs/{run_id}", headers=theirs).status_code == 404

        assert client.post("/console/login", data={"token": alpha}, follow_redirects=False).status_code == 303
        page = client.get("/console/pipelines").text
        assert f'href="/console/pipelines/{run_id}"' in page and ">cli<" in page
        detail = client.get(f"/console/pipelines/{run_id}")
        assert detail.status_code == 200 and "model:toy2@v1" in detail.text
        assert 'hx-trigger="every 1s"' not in detail.text  # ended: the DAG is no longer polled
        other = TestClient(app, base_url=BASE)
        other.post("/console/login", data={"token": beta}, follow_redirects=False)
        assert f"/console/pipelines/{run_id}" not in other.get("/console/pipelines").text
        assert other.get(f"/console/pipelines/{run_id}").status_code == 404


def test_a_running_cli_run_is_live_in_the_console(sqlite_store):
    pipeline = parse_pipeline({"name": "live", "project": "alpha", "steps": {
        "a": {"type": "register", "inputs": {"model": "model:x@v1"}, "config": {"name": "y"}},
        "b": {"type": "register", "inputs": {"model": "a"}, "config": {"name": "z"}}}})
    recorder = runs.RunRecorder(sqlite_store, pipeline)
    run_id = recorder.begin()
    recorder.on_event("a", "start", {"key": "k"})
    recorder.on_event("a", "progress", {"event": "job", "job": 7})
    client = TestClient(create_app(sqlite_store, rate_per_minute=10**6), base_url=BASE)
    client.post("/console/login", data={"token": create_token(sqlite_store, "alpha", "read")},
                follow_redirects=False)
    dag = client.get(f"/console/pipelines/{run_id}/dag").text
    assert 'hx-trigger="every 1s"' in dag and 'data-step="a" data-state="running"' in dag
    assert 'href="/console/jobs/7"' in dag and 'data-step="b" data-state="pending"' in dag


def test_runs_cli_lists_and_shows_a_run_and_rejects_an_unknown_id(cli_run, monkeypatch, capsys):
    store, _, _ = cli_run
    monkeypatch.setenv("EMBODIA_HOME", str(store.home))
    monkeypatch.setenv("EMBODIA_DB_URL", store.url)
    listed = CliRunner().invoke(cli_app, ["runs", "list"], catch_exceptions=False)
    assert listed.exit_code == 0 and "promote" in listed.output and "succeeded" in listed.output
    run_id = runs.list_runs(store)[0]["id"]
    shown = CliRunner().invoke(cli_app, ["runs", "show", str(run_id)], catch_exceptions=False)
    assert shown.exit_code == 0 and "model:toy2@v1" in shown.output and "register" in shown.output
    monkeypatch.setattr(sys, "argv", ["embodia", "runs", "show", "999"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert re.search(r"no pipeline run 999 .*embodia runs list", err) and len(err.splitlines()) == 1


def test_migration_from_the_previous_head_adds_the_run_tables(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004")
    assert "pipeline_runs" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert {"pipeline_runs", "pipeline_run_steps"} <= set(inspect(engine).get_table_names())
    engine.dispose()
