"""`embodia regions | place | fleet`: listing, placing and explaining, failover, the simulator, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from embodia.cli import app
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


def invoke(*args: str, code: int = 0):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    return result


def _eu_dataset(store, tmp_path):
    run_stage("generate", "dataset", {"n": 1}, tmp_path / "eu",
              lambda staging, rep: (staging / "f").write_text("eu") and StageResult())
    return registry.register_artifact(store, tmp_path / "eu", jurisdiction="EU")


def test_place_run_then_explain_shows_the_decision_and_every_rejected_region(workspace, tmp_path):
    data = _eu_dataset(workspace, tmp_path)
    job = queue.submit(workspace, "train", {}, inputs={"dataset": data.ref})
    out = invoke("place", "run").output
    assert "1 jobs (milp" in out and "1 placed" in out
    out = invoke("place", "explain", str(job.id)).output
    assert "placed in eu-netherlands" in out and "rejected regions" in out
    assert "sa-brazil" in out and "data residency" in out and "home" in out
    info = json.loads(invoke("place", "explain", str(job.id), "--json").stdout)
    assert info["region"] == "eu-netherlands" and len(info["rejected"]) == 8


def test_regions_down_and_up_move_jobs_and_unknown_names_are_one_line_errors(workspace, tmp_path):
    data = _eu_dataset(workspace, tmp_path)
    job = queue.submit(workspace, "train", {}, inputs={"dataset": data.ref})
    invoke("place", "run")
    out = invoke("regions", "down", "eu-netherlands").output
    assert "region eu-netherlands is down: 1 jobs re-placed -> 1 placed" in out
    assert queue.get_job(workspace, job.id).region == "eu-france"
    listing = invoke("regions", "list", "--json").stdout
    status = {r["name"]: r["status"] for r in json.loads(listing)["regions"]}
    assert status["eu-netherlands"] == "down" and status["eu-france"] == "up"
    invoke("regions", "down", "eu-france")
    assert queue.get_job(workspace, job.id).status == "held"
    assert "is up: 1 placed" in invoke("regions", "up", "eu-france").output
    out = invoke("artifacts", "residency", data.ref, "br").output
    assert "residency BR,EU" in out
    bad = invoke("regions", "down", "mars-1", code=2)
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown region 'mars-1'; known regions: home, sa-brazil" in lines[0]
    assert "Traceback" not in bad.output


def test_a_bad_catalog_field_is_one_line_naming_file_and_field(workspace, tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("home: home\nregions:\n  - {name: home, jurisdiction: X, cpu: {count: many, "
                       "price_per_hour: 0}, egress_per_gb: 0}\n")
    bad = invoke("regions", "list", "--catalog", str(catalog), code=2)
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "regions[0].cpu.count" in lines[0] and str(catalog) in " ".join(lines)
    bad = invoke("place", "explain", "999", code=2)
    assert "job 999 does not exist" in bad.stderr


def test_fleet_simulate_reports_zero_violations_near_the_optimum_with_plots(tmp_path):
    out = tmp_path / "sim"
    result = invoke("fleet", "simulate", "--jobs", "1500", "--jobs-per-window", "150", "--check-windows", "3",
                    "--outages", "3", "--out", str(out))
    summary = json.loads((out / "fleet.json").read_text())
    assert summary["violations"] == 0 and summary["jobs"] == 1500
    assert summary["placed"] + summary["never_started"] == 1500
    assert summary["held_at_end"] + summary["waiting_at_end"] >= summary["never_started"]
    assert summary["vs_optimum"]["windows"] == 3 and summary["vs_optimum"]["gap"] < 0.01
    assert set(summary["utilization"]) >= {"sa-brazil", "eu-france", "ae-dubai"}
    assert (out / "fleet.png").stat().st_size > 10_000
    assert "0 violations" in result.output


def test_fleet_windows_over_the_exact_limit_are_checked_on_a_sample():
    from embodia.platform.regions.catalog import load_catalog
    from embodia.platform.regions.fleet import SimConfig, simulate
    from embodia.platform.regions.policy import load_policy

    catalog = load_catalog()
    result = simulate(catalog, load_policy(None, catalog),
                      SimConfig(jobs=600, jobs_per_window=120, check_windows=5, exact_max_jobs=40, outages=1))
    assert len(result.checked) == 5 and all(c["sampled"] == 1.0 and c["jobs"] == 40 for c in result.checked)
    assert all(c["ours"] >= c["optimum"] - 1e-6 and c["gap"] < 0.05 for c in result.checked)
    assert not result.violations
