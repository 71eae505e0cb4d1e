"""Web console (in-process, no browser): sign-in by token and one-time link, CSRF on POSTs, pages scoped to the
caller's project, HTML error pages, readable-number filters and the server-side graph layout."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from embodia.core import pages as fmt
from embodia.platform.api.app import create_app
from embodia.platform.api.auth import create_token
from embodia.platform.api.console import login_link
from embodia.platform.api.console.graphs import Node, layered
from embodia.platform.api.console.session import COOKIE

BASE = "http://127.0.0.1:8100"


@pytest.fixture
def app(sqlite_store):
    return create_app(sqlite_store, rate_per_minute=10**6)


def _client(app) -> TestClient:
    return TestClient(app, base_url=BASE)


def _signed_in(app, project: str = "alpha", scope: str = "admin") -> TestClient:
    client = _client(app)
    token = create_token(app.state.store, project, scope)
    response = client.post("/console/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    return client


def _csrf(client: TestClient) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]{64})"', client.get("/console/").text).group(1)


def test_pages_redirect_to_login_without_a_session(app):
    response = _client(app).get("/console/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"


def test_login_sets_an_httponly_samesite_strict_cookie(app):
    client = _client(app)
    token = create_token(app.state.store, "alpha", "read")
    response = client.post("/console/login", data={"token": token}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{COOKIE}=") and "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/console/")
    assert page.status_code == 200 and "Project alpha" in page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text


def test_login_with_a_wrong_token_says_so(app):
    response = _client(app).post("/console/login", data={"token": "emb_nope"})
    assert response.status_code == 401 and "unknown or revoked" in response.text


def test_one_time_link_signs_in_once(app):
    link = login_link(app, "alpha", BASE).removeprefix(BASE)
    first = _client(app)
    assert first.get(link, follow_redirects=False).status_code == 303
    assert first.get("/console/").status_code == 200
    second = _client(app)
    response = second.get(link, follow_redirects=False)
    assert response.status_code == 401 and "used already" in response.text
    assert second.get("/console/", follow_redirects=False).status_code == 303


def test_post_without_the_csrf_token_is_refused(app):
    client = _signed_in(app)
    assert client.post("/console/logout", data={"csrf": "0" * 64}).status_code == 403
    assert client.post("/console/logout", data={"csrf": _csrf(client)},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    response = client.post("/console/logout", data={"csrf": _csrf(client)}, follow_redirects=False)
    assert response.status_code == 303


def test_csrf_header_is_accepted_like_the_form_field(app):
    client = _signed_in(app)
    response = client.post("/console/logout", headers={"X-CSRF-Token": _csrf(client)}, follow_redirects=False)
    assert response.status_code == 303


def test_unknown_console_page_is_an_html_404_and_the_api_stays_json(app):
    client = _signed_in(app)
    page = client.get("/console/jobs/999999")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    api = client.get("/api/v1/jobs/999999")
    assert api.status_code == 401 and "error" in api.json()  # the API never reads the console's cookie


def test_pages_send_a_content_security_policy_that_keeps_requests_local(app):
    response = _signed_in(app).get("/console/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


def test_static_files_are_vendored():
    from embodia.platform.api.console.pages import HERE

    for name in ("htmx.min.js", "htmx.LICENSE", "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE",
                 "console.js", "console.css"):
        assert (HERE / "static" / name).stat().st_size > 100, name


@pytest.mark.parametrize(("value", "unit", "text"), [
    (1234567.0, "", "1,234,567"), (0.000123456, "", "0.000123"), (12.3456, "ms", "12.3\u202fms"),
    (float("nan"), "", "–"), (None, "", "–"), (float("inf"), "s", "–"), (-2.5, "", "-2.5"), (0, "", "0")])
def test_number_filter_rounds_and_adds_units(value, unit, text):
    assert fmt.number(value, unit) == text


def test_size_and_duration_filters():
    assert fmt.size(3 * 1024 * 1024) == "3\u202fMiB"
    assert fmt.seconds(0.0042) == "4.2\u202fms" and fmt.seconds(600) == "10\u202fmin"
    assert fmt.percent(0.5) == "50.0\u202f%"


def test_layered_layout_puts_each_node_right_of_its_inputs():
    nodes = [Node(name, name) for name in ("demos", "policy", "onnx", "evaluate", "gate", "register")]
    edges = [("demos", "policy"), ("policy", "onnx"), ("onnx", "evaluate"), ("onnx", "gate"),
             ("evaluate", "register"), ("gate", "register"), ("onnx", "register")]
    layout = layered(nodes, edges)
    x = {node.id: node.x for node in layout.nodes}
    assert all(x[a] < x[b] for a, b in edges)
    assert x["evaluate"] == x["gate"] and len(layout.edges) == len(edges)
    assert layout.width >= max(x.values()) + layout.node_w


# ------------------------------------------------------------------------------- pages scoped to a project


def _report(store, tmp_path, project: str):
    """A real stage output of kind `report` (a results.json and a video file) owned by `project`."""
    from embodia.core.stage import StageResult, run_stage
    from embodia.platform import registry
    from embodia.platform.models import ProjectArtifact

    def body(staging, reporter):
        (staging / "results.json").write_text(json.dumps({"scenarios": [{"name": f"{project}-scene",
            "description": "<b>bold</b>", "summary": {"episodes": 2, "success_rate": 0.5,
                                                      "success_ci95": [0.1, 0.9], "return_mean": 1.5}}]}))
        (staging / "videos").mkdir()
        (staging / "videos" / "nominal_best.mp4").write_bytes(b"\0" * 64)
        (staging / "page.html").write_text("<script>alert(1)</script>")
        return StageResult(seeds=[0], summary={"success_rate": {"nominal": 0.5}})

    run_stage("evaluate", "report", {"project": project}, tmp_path / project, body)
    info = registry.register_artifact(store, tmp_path / project)
    with store.session() as session:
        session.add(ProjectArtifact(project=project, sha256=info.sha256))
    return info.sha256


@pytest.fixture
def two_projects(app, tmp_path):
    from embodia.platform import queue

    store = app.state.store
    reports = {p: _report(store, tmp_path, p) for p in ("alpha", "beta")}
    jobs = {p: queue.submit(store, "noop", {}, project=p).id for p in ("alpha", "beta")}
    return reports, jobs


def test_pages_show_only_the_callers_project(app, two_projects):
    reports, jobs = two_projects
    alpha = _signed_in(app, "alpha", "read")
    listing = alpha.get("/console/reports").text
    assert reports["alpha"][:12] in listing and reports["beta"][:12] not in listing
    page = alpha.get(f"/console/reports/{reports['alpha']}").text
    assert "alpha-scene" in page and "50.0\u202f%" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert 'preload="none"' in page and "autoplay" not in page
    assert f"/console/jobs/{jobs['alpha']}" in alpha.get("/console/jobs").text
    assert f"/console/jobs/{jobs['beta']}" not in alpha.get("/console/jobs").text
    for path in (f"/console/reports/{reports['beta']}", f"/console/artifacts/{reports['beta']}",
                 f"/console/artifacts/{reports['beta']}/files/0", f"/console/lineage?artifact={reports['beta']}",
                 f"/console/jobs/{jobs['beta']}", f"/console/jobs/{jobs['beta']}/log-stream",
                 f"/console/runs/{reports['beta']}"):
        answer = alpha.get(path)
        assert answer.status_code == 404 and "beta" not in answer.text.replace(reports["beta"], ""), path


def test_artifact_files_are_served_sandboxed_with_ranges(app, two_projects):
    reports, _ = two_projects
    client = _signed_in(app, "alpha", "read")
    files = {f["name"]: f["index"] for f in client.get(
        f"/api/v1/artifacts/{reports['alpha']}", headers={"Authorization": "Bearer " + create_token(
            app.state.store, "alpha", "read")}).json()["files"]}
    html = client.get(f"/console/artifacts/{reports['alpha']}/files/{files['page.html']}")
    assert html.status_code == 200 and "sandbox" in html.headers["content-security-policy"]
    video = client.get(f"/console/artifacts/{reports['alpha']}/files/{files['videos/nominal_best.mp4']}",
                       headers={"Range": "bytes=0-9"})
    assert video.status_code == 206 and len(video.content) == 10


def test_read_scope_cannot_submit_cancel_or_promote(app, two_projects):
    _, jobs = two_projects
    client = _signed_in(app, "alpha", "read")
    csrf = _csrf(client)
    assert "needs a run or admin token" in client.get("/console/pipelines").text
    assert client.post("/console/pipelines", data={"csrf": csrf, "yaml": "name: x"}).status_code == 403
    assert client.post(f"/console/jobs/{jobs['alpha']}/cancel", data={"csrf": csrf}).status_code == 403
    assert client.post("/console/registry/pick/promote", data={"csrf": csrf, "version": "1"}).status_code == 403


def test_a_bad_pipeline_is_a_one_line_error_and_the_text_is_kept(app):
    client = _signed_in(app, "alpha", "run")
    answer = client.post("/console/pipelines", data={"csrf": _csrf(client), "yaml": "name: [unclosed"})
    assert answer.status_code == 400 and "not valid YAML" in answer.text and "name: [unclosed" in answer.text
    answer = client.post("/console/pipelines", data={"csrf": _csrf(client), "yaml": "name: p\nsteps: {a: {type: nope}}"})
    assert answer.status_code == 400 and 'class="error"' in answer.text


def test_cancel_from_the_job_page(app, two_projects):
    _, jobs = two_projects
    client = _signed_in(app, "alpha", "run")
    answer = client.post(f"/console/jobs/{jobs['alpha']}/cancel", data={"csrf": _csrf(client)})
    assert answer.status_code == 200 and "cancelled" in answer.text


def test_log_stream_sends_the_log_then_ends(app, two_projects):
    from embodia.platform import queue

    _, jobs = two_projects
    store = app.state.store
    queue.cancel(store, jobs["alpha"])
    client = _signed_in(app, "alpha", "read")
    body = client.get(f"/console/jobs/{jobs['alpha']}/log-stream").text
    assert body.startswith("event: status") and '"cancelled"' in body and "event: end" in body


def test_ab_comparison_page_shows_each_scenario_verdict_and_both_sides_videos(app, tmp_path):
    from embodia.core.stage import StageResult, run_stage
    from embodia.platform import registry
    from embodia.platform.models import ProjectArtifact

    decision = {"metric": "success", "baseline": 0.9, "candidate": 0.5, "difference": -0.4, "difference_low": -0.6,
                "difference_high": -0.2, "p_value": 0.01, "p_adjusted": 0.02, "verdict": "worse", "test": "mcnemar"}
    comparison = {"metric": "success", "margin": 0.05, "alpha": 0.05, "verdict": "worse", "baseline": "A.onnx",
                  "candidate": "B.onnx", "overall": {"name": "all", "success": decision, "verdict": "worse"},
                  "scenarios": [{"name": "laggy", "success": decision, "verdict": "worse"}]}

    def body(staging, reporter):
        (staging / "comparison.json").write_text(json.dumps(comparison))
        for side in ("baseline", "candidate"):
            (staging / side / "videos").mkdir(parents=True)
            (staging / side / "videos" / "laggy_best.mp4").write_bytes(b"\0" * 32)
        return StageResult(seeds=[0], summary={"verdict": "worse", "gate_failed": True})

    run_stage("compare", "comparison", {}, tmp_path / "cmp", body)
    sha = registry.register_artifact(app.state.store, tmp_path / "cmp").sha256
    with app.state.store.session() as session:
        session.add(ProjectArtifact(project="alpha", sha256=sha))
    page = _signed_in(app, "alpha", "read").get(f"/console/reports/{sha}").text
    assert "A/B per scenario" in page and "laggy" in page and "-40.0\u202f%" in page
    assert 'class="state worse"' in page
    assert "candidate · laggy · best" in page and "baseline · laggy · best" in page


def test_learning_curve_is_the_mean_over_seeds_with_a_min_max_band():
    from embodia.platform.api.console.artifacts import _curve_chart

    curves = {"a": [{"step": 0, "loss": 1.0}, {"step": 10, "loss": 0.5}],
              "b": [{"step": 0, "loss": 3.0}, {"step": 10, "loss": 0.7}, {"step": 20, "loss": 0.1}]}
    chart = _curve_chart("loss", curves)
    steps, mean, low, high = chart["data"]
    assert steps == [0.0, 10.0, 20.0] and mean == [2.0, 0.6, 0.1]
    assert low == [1.0, 0.5, 0.1] and high == [3.0, 0.7, 0.1]
    assert chart["series"][0]["band"] and "mean of 2 seeds" in chart["series"][0]["label"]
    single = _curve_chart("loss", {"a": curves["a"]})
    assert len(single["data"]) == 2 and not single["series"][0]["band"]
