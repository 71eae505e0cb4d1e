"""REST API: tokens and scopes, and tenant isolation on every route (two projects, SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from embodia.core.stage import StageResult, run_stage
from embodia.platform import queue, registry
from embodia.platform.api.app import create_app
from embodia.platform.api.auth import authenticate, create_token
from embodia.platform.models import ApiToken, ProjectArtifact


def _artifact(store, tmp_path, name, project, payload, inputs=None):
    """A real stage output registered and owned by `project`."""
    def body(staging, reporter):
        (staging / "data.txt").write_text(payload)
        (staging / "sub").mkdir()
        (staging / "sub" / "more.bin").write_bytes(bytes(range(256)))
        return StageResult(seeds=[0], summary={"n": len(payload)})
    run_stage("generate", "dataset", {"payload": payload}, tmp_path / name, body, inputs=inputs)
    info = registry.register_artifact(store, tmp_path / name)
    with store.session() as session:
        session.add(ProjectArtifact(project=project, sha256=info.sha256))
    return info


@pytest.fixture
def world(store, tmp_path):
    """Two tenants, each with a token per scope, a failed job, and artifacts (one derived) and a model version."""
    tokens = {(p, s): create_token(store, p, s) for p in ("alpha", "beta") for s in ("read", "run", "admin")}
    jobs, arts = {}, {}
    for project in ("alpha", "beta"):
        job = queue.submit(store, "noop", {}, project=project)
        jobs[project] = job.id
        base = _artifact(store, tmp_path, f"{project}-data", project, f"{project} payload")
        child = _artifact(store, tmp_path, f"{project}-child", project, f"{project} child",
                          inputs={"data": tmp_path / f"{project}-data"})
        registry.register_model_version(store, f"{project}-model", child.sha256)
        arts[project] = (base.sha256, child.sha256)
    client = TestClient(create_app(store), raise_server_exceptions=False)
    return client, tokens, jobs, arts


def _h(token):
    return {"Authorization": f"Bearer {token}"}


def test_token_is_stored_hashed_and_authenticates(store):
    secret = create_token(store, "alpha", "run")
    with store.session() as session:
        stored = [row.secret_sha256 for row in session.query(ApiToken)]
    assert secret not in stored and len(stored[0]) == 64
    caller = authenticate(store, secret)
    assert (caller.project, caller.scope) == ("alpha", "run")


def test_missing_and_bad_tokens_are_401(world):
    client, *_ = world
    assert client.get("/api/v1/jobs").status_code == 401
    answer = client.get("/api/v1/jobs", headers=_h("emb_nope"))
    assert answer.status_code == 401 and "unknown" in answer.json()["error"]


def test_project_shows_only_own(world):
    client, tokens, *_ = world
    body = client.get("/api/v1/project", headers=_h(tokens["alpha", "read"])).json()
    assert body["name"] == "alpha" and body["scope"] == "read"


def test_jobs_isolated(world):
    client, tokens, jobs, _ = world
    a, b = _h(tokens["alpha", "admin"]), jobs["beta"]
    listed = client.get("/api/v1/jobs", headers=a).json()
    assert [j["id"] for j in listed] == [jobs["alpha"]]
    assert client.get(f"/api/v1/jobs/{jobs['alpha']}", headers=a).status_code == 200
    for route in (f"/api/v1/jobs/{b}", f"/api/v1/jobs/{b}/logs", f"/api/v1/jobs/{b}/events", "/api/v1/jobs/999999"):
        answer = client.get(route, headers=a)
        assert answer.status_code == 404 and "error" in answer.json(), route
    for action in ("cancel", "retry"):
        assert client.post(f"/api/v1/jobs/{b}/{action}", headers=a).status_code == 404
    assert queue.get_job(world[0].app.state.store, b).status == "queued"  # untouched


def test_job_cancel_retry_events_and_scopes(world):
    client, tokens, jobs, _ = world
    job = jobs["alpha"]
    read, run = _h(tokens["alpha", "read"]), _h(tokens["alpha", "run"])
    answer = client.post(f"/api/v1/jobs/{job}/cancel", headers=read)
    assert answer.status_code == 403 and "scope" in answer.json()["error"]
    assert client.post(f"/api/v1/jobs/{job}/cancel", headers=run).json()["status"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job}/cancel", headers=run)
    assert again.status_code == 400 and "already ended" in again.json()["error"]
    events = client.get(f"/api/v1/jobs/{job}/events", headers=read)
    assert events.headers["content-type"].startswith("text/event-stream")
    assert '"status": "cancelled"' in events.text
    assert client.post(f"/api/v1/jobs/{job}/retry", headers=run).json()["status"] == "queued"
    assert client.get(f"/api/v1/jobs/{job}/logs", headers=read).status_code == 404  # no attempt yet


def test_artifacts_isolated_with_range_download(world):
    client, tokens, _, arts = world
    a = _h(tokens["alpha", "read"])
    listed = {x["sha256"] for x in client.get("/api/v1/artifacts", headers=a).json()}
    assert listed == set(arts["alpha"])
    detail = client.get(f"/api/v1/artifacts/{arts['alpha'][0]}", headers=a).json()
    index = next(f["index"] for f in detail["files"] if f["name"] == "sub/more.bin")
    full = client.get(f"/api/v1/artifacts/{arts['alpha'][0]}/files/{index}", headers=a)
    assert full.status_code == 200 and full.content == bytes(range(256))
    part = client.get(f"/api/v1/artifacts/{arts['alpha'][0]}/files/{index}", headers={**a, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == bytes(range(10, 20))
    for sha in arts["beta"]:
        for route in (f"/api/v1/artifacts/{sha}", f"/api/v1/artifacts/{sha}/files/0", f"/api/v1/lineage/{sha}"):
            assert client.get(route, headers=a).status_code == 404, route
    for bad in ("../../etc/passwd", "..%2F..%2Fetc", "abc"):
        assert client.get(f"/api/v1/artifacts/{bad}", headers=a).status_code in (404, 422)


def test_lineage_and_models_isolated(world):
    client, tokens, _, arts = world
    a = _h(tokens["alpha", "read"])
    graph = client.get(f"/api/v1/lineage/{arts['alpha'][1]}", headers=a).json()
    assert [n["sha256"] for n in graph["ancestors"]["next"]] == [arts["alpha"][0]]
    models = client.get("/api/v1/models", headers=a).json()
    assert [m["name"] for m in models] == ["alpha-model"]
    assert client.get("/api/v1/models?name=beta-model", headers=a).json() == []


def test_rate_limit_answers_429(store):
    token = create_token(store, "alpha", "read")
    client = TestClient(create_app(store, rate_per_minute=3))
    codes = [client.get("/api/v1/jobs", headers=_h(token)).status_code for _ in range(5)]
    assert codes[:3] == [200] * 3 and codes[-1] == 429


def test_body_limit_answers_413(store):
    token = create_token(store, "alpha", "run")
    client = TestClient(create_app(store, max_body_bytes=100))
    answer = client.post("/api/v1/jobs/1/cancel", headers=_h(token), content=b"x" * 1000)
    assert answer.status_code == 413 and "larger" in answer.json()["error"]


def test_bad_input_is_4xx_json(world):
    client, tokens, *_ = world
    a = _h(tokens["alpha", "read"])
    for route in ("/api/v1/jobs/-1", "/api/v1/jobs/abc", "/api/v1/jobs?limit=0", "/api/v1/jobs?status=weird"):
        answer = client.get(route, headers=a)
        assert answer.status_code == 422 and "error" in answer.json(), route


def test_cli_token_create_prints_a_working_token(store, monkeypatch):
    from typer.testing import CliRunner

    from embodia.cli import app
    from embodia.platform.store import DB_URL_ENV

    monkeypatch.setenv(DB_URL_ENV, store.url)

    result = CliRunner().invoke(app, ["token", "create", "--project", "gamma", "--scope", "run"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert authenticate(store, secret).project == "gamma"
    bad = CliRunner().invoke(app, ["token", "create", "--project", "../x", "--scope", "run"])
    assert bad.exit_code != 0 and "invalid" in bad.output


def test_promote_and_alias_history_isolated(world):
    client, tokens, *_ = world
    admin, read = _h(tokens["alpha", "admin"]), _h(tokens["alpha", "read"])
    assert client.post("/api/v1/models/alpha-model/aliases/prod", headers=read, json={"version": 1}).status_code == 403
    moved = client.post("/api/v1/models/alpha-model/aliases/prod", headers=admin, json={"version": 1, "why": "ok"})
    assert moved.status_code == 200 and moved.json()["aliases"] == ["prod"] and "gate" in moved.json()
    history = client.get("/api/v1/models/alpha-model/aliases", headers=read).json()
    assert [(e["alias"], e["to_version"], e["why"]) for e in history] == [("prod", 1, "ok")]
    other = client.post("/api/v1/models/beta-model/aliases/prod", headers=admin, json={"version": 1})
    missing = client.post("/api/v1/models/nobody/aliases/prod", headers=admin, json={"version": 1})
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"].replace("beta-model", "X") == missing.json()["error"].replace("nobody", "X")
    assert client.get("/api/v1/models/beta-model/aliases", headers=read).status_code == 404
    bad = client.post("/api/v1/models/alpha-model/aliases/v3", headers=admin, json={"version": 1})
    assert bad.status_code == 400 and "reserved" in bad.json()["error"]


PIPELINE = """
name: p
steps:
  demos: {type: generate, config: {task: arm-reach, episodes: 2}}
  policy: {type: train, inputs: {dataset: %s}, config: {algo: bc, task: arm-reach, num_steps: 10}}
"""


def test_pipeline_validate_and_plan_only_see_own_artifacts(world):
    client, tokens, _, arts = world
    read = _h(tokens["alpha", "read"])
    ok = client.post("/api/v1/pipelines/plan", headers=read, json={"yaml": PIPELINE % "demos"})
    assert ok.status_code == 200, ok.text
    assert [(r["name"], r["status"]) for r in ok.json()["plan"]] == [("demos", "miss"), ("policy", "pending")]
    own = client.post("/api/v1/pipelines/validate", headers=read,
                      json={"yaml": PIPELINE % f'"dataset:sha256:{arts["alpha"][0]}"'})
    assert own.status_code == 200, own.text
    errors = [client.post("/api/v1/pipelines/plan", headers=read, json={"yaml": PIPELINE % f'"dataset:sha256:{sha}"'})
              for sha in (arts["beta"][0], "f" * 64)]
    assert [e.status_code for e in errors] == [400, 400]
    assert errors[0].json()["error"].replace(arts["beta"][0], "X") == errors[1].json()["error"].replace("f" * 64, "X")
    for text in ("[1, 2", "name: p\nsteps: {a: {type: nope}}", "just a string"):
        answer = client.post("/api/v1/pipelines/validate", headers=read, json={"yaml": text})
        assert answer.status_code == 400 and answer.json()["error"].startswith("pipeline"), text


def _fake_deployment(store, name, sha):
    """A deployment's state files as `deploy` writes them (no process: its supervisor already ended)."""
    from embodia.core.atomic import atomic_write_text
    from embodia.platform import deploy

    state = deploy.DeploymentState(name=name, instance="i1", model_path="/nonexistent.onnx", model_sha256=sha,
                                   model_ref=f"model:{name}@v1", port=9, status="stopped")
    deploy.write_state(deploy.deployments_root(store.home) / name / "i1.json", state)
    atomic_write_text(deploy.deployments_root(store.home) / name / "current", "i1\n")


def test_deployments_isolated(world):
    client, tokens, _, arts = world
    store = client.app.state.store
    _fake_deployment(store, "alpha-serve", arts["alpha"][1])
    _fake_deployment(store, "beta-serve", arts["beta"][1])
    read, admin = _h(tokens["alpha", "read"]), _h(tokens["alpha", "admin"])
    listed = client.get("/api/v1/deployments", headers=read).json()
    assert [(d["name"], d["url"]) for d in listed] == [("alpha-serve", "http://127.0.0.1:9")]
    assert client.post("/api/v1/deployments/alpha-serve/stop", headers=read).status_code == 403
    assert client.post("/api/v1/deployments/alpha-serve/stop", headers=admin).json()["status"] == "stopped"
    assert client.post("/api/v1/deployments/beta-serve/stop", headers=admin).status_code == 404
    for model in ("model:beta-model@v1", "model:nobody@v1"):
        answer = client.post("/api/v1/deployments", headers=admin, json={"name": "x", "model": model})
        assert answer.status_code == 404, answer.text
    for bad in ("alpha.py", "https://evil/model.onnx", "mod:func"):
        answer = client.post("/api/v1/deployments", headers=admin, json={"name": "x", "model": bad})
        assert answer.status_code == 422 and "model" in answer.json()["error"]


def test_reports_list_only_own(world, tmp_path):
    client, tokens, *_ = world
    store = client.app.state.store

    def body(staging, reporter):
        (staging / "report.html").write_text("<html></html>")
        return StageResult(seeds=[0], summary={})
    run_stage("evaluate", "report", {"suite": "s"}, tmp_path / "rep", body)
    info = registry.register_artifact(store, tmp_path / "rep")
    with store.session() as session:
        session.add(ProjectArtifact(project="beta", sha256=info.sha256))
    assert client.get("/api/v1/reports", headers=_h(tokens["alpha", "read"])).json() == []
    listed = client.get("/api/v1/reports", headers=_h(tokens["beta", "read"])).json()
    assert [r["sha256"] for r in listed] == [info.sha256]


@pytest.mark.slow
def test_pipeline_run_through_the_api(sqlite_store):
    import time

    client = TestClient(create_app(sqlite_store), raise_server_exceptions=False)
    run, other = _h(create_token(sqlite_store, "alpha", "run")), _h(create_token(sqlite_store, "beta", "read"))
    text = "name: tiny\nsteps:\n  demos: {type: generate, config: {task: arm-reach, episodes: 1}}\n"
    assert client.post("/api/v1/pipelines", headers=_h(create_token(sqlite_store, "alpha", "read")),
                       json={"yaml": text}).status_code == 403
    started = client.post("/api/v1/pipelines", headers=run, json={"yaml": text})
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert client.get(f"/api/v1/pipelines/runs/{run_id}", headers=other).status_code == 404
    assert client.get("/api/v1/pipelines/runs", headers=other).json() == []
    deadline = time.monotonic() + 300
    while (body := client.get(f"/api/v1/pipelines/runs/{run_id}", headers=run).json())["status"] == "running":
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    assert body["status"] == "succeeded" and body["steps"] == {"demos": "ran"}, body
    assert body["origin"] == "api" and body["source"] == "pipeline" and set(body["jobs"]) == {"demos"}, body
    jobs = client.get("/api/v1/jobs", headers=run).json()
    assert [j["type"] for j in jobs] == ["generate"] and jobs[0]["status"] == "succeeded"
    assert client.get("/api/v1/jobs", headers=other).json() == []
    datasets = client.get("/api/v1/artifacts?kind=dataset", headers=run).json()
    assert len(datasets) == 1 and client.get("/api/v1/artifacts", headers=other).json() == []


def test_job_logs_slice_own_attempt(world):
    client, tokens, jobs, _ = world
    store = client.app.state.store
    claim = queue.claim(store, "w1")
    job_id, project = claim.job.id, claim.job.project
    claim.log_path.parent.mkdir(parents=True, exist_ok=True)
    claim.log_path.write_bytes(b"hello log\n")
    mine, theirs = _h(tokens[project, "read"]), _h(tokens[({"alpha", "beta"} - {project}).pop(), "read"])
    body = client.get(f"/api/v1/jobs/{job_id}/logs", headers=mine).json()
    assert (body["text"], body["next_offset"]) == ("hello log\n", 10)
    assert client.get(f"/api/v1/jobs/{job_id}/logs?offset=6", headers=mine).json()["text"] == "log\n"
    assert client.get(f"/api/v1/jobs/{job_id}/logs", headers=theirs).status_code == 404


def test_members_and_tokens_of_own_project(world):
    client, tokens, *_ = world
    admin, run = _h(tokens["alpha", "admin"]), _h(tokens["alpha", "run"])
    assert client.post("/api/v1/project/tokens", headers=run, json={"scope": "read"}).status_code == 403
    made = client.post("/api/v1/project/tokens", headers=admin, json={"scope": "read", "name": "ci"})
    assert made.status_code == 201
    assert client.get("/api/v1/project", headers=_h(made.json()["token"])).json()["name"] == "alpha"
    body = client.post("/api/v1/project/members", headers=admin, json={"user": "ana", "role": "run"}).json()
    assert {"user": "ana", "role": "run"} in body["members"]
    beta = client.get("/api/v1/project", headers=_h(tokens["beta", "read"])).json()
    assert all(m["user"] != "ana" for m in beta["members"])
    bad = client.post("/api/v1/project/members", headers=admin, json={"user": "x", "role": "owner"})
    assert bad.status_code == 422
