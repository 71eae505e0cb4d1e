"""Web console (in-process, no browser): sign-in by token and one-time link, CSRF on POSTs, pages scoped to the
caller's project, HTML error pages, readable-number filters and the server-side graph layout."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from embodia.platform.api.app import create_app
from embodia.platform.api.auth import create_token
from embodia.platform.api.console import format as fmt
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
