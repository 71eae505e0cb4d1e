"""The web console in real headless Chromium (Debian `chromium`) against `embodia server`'s app under uvicorn:
sign in with a one-time link, submit a toy quickstart and watch its DAG finish live, follow a job's log, open the
evaluation report and play a video, promote a model, view the lineage graph, at 1280 px and 390 px; no console
errors and no request leaves 127.0.0.1."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import playwright.sync_api as playwright_api
import pytest

from embodia.platform.deploy import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOCAL_HOSTS = {"127.0.0.1"}
PAGES = ("/console/", "/console/pipelines", "/console/jobs", "/console/runs", "/console/datasets",
         "/console/reports", "/console/registry", "/console/lineage", "/console/deployments")
TINY_QUICKSTART = """\
name: tiny-quickstart
description: the quickstart at toy sizes (a browser test)
steps:
  demos:
    type: generate
    config: {task: arm-pick-place, episodes: 2, keep: success, cameras: [front], image_size: 48,
             envs_per_worker: 2, seed: 0}
  policy:
    type: train
    inputs: {dataset: demos}
    config: {algo: bc, task: arm-pick-place, num_steps: 20, seed: 0}
  onnx:
    type: export
    inputs: {checkpoint: policy}
  evaluate:
    type: evaluate
    inputs: {policy: onnx}
    config: {suite: arm-pick-place, episodes: 1, scenarios: [nominal], videos: true}
  gate:
    type: gate
    inputs: {candidate: onnx, baseline: "model:pick@production"}
    config: {suite: arm-pick-place, episodes: 1, scenarios: [nominal], margin: 0.05, block_on: [worse]}
  register:
    type: register
    inputs: {model: onnx, gate: gate, report: evaluate}
    config: {name: pick, alias: staging}
  serve:
    type: deploy
    inputs: {model: register}
    config: {name: console-test}
"""




@pytest.fixture
def server(sqlite_store):
    """`embodia server`'s app under uvicorn in a thread on a free 127.0.0.1 port; yields (app, base URL)."""
    import uvicorn

    from embodia.platform import deploy
    from embodia.platform.api.app import create_app

    app = create_app(sqlite_store, rate_per_minute=10**6)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "uvicorn did not start"
    yield app, f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)
    for state in deploy.list_deployments(sqlite_store.home):
        if state.status not in ("stopped", "failed"):
            deploy.stop(sqlite_store, state.name)


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watch:
    """Console errors, uncaught page errors and requests to any host but 127.0.0.1, over a browser context."""

    def __init__(self, context):
        self.errors: list[str] = []
        self.foreign: list[str] = []
        context.on("request", self._request)
        context.on("page", self.page)

    def page(self, page) -> None:
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"{page.url}: {msg.text}"))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))

    def _request(self, request) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:")):
            return
        if host not in LOCAL_HOSTS:
            self.foreign.append(request.url)


def _context(browser, width: int):
    context = browser.new_context(viewport={"width": width, "height": 900})
    return context, Watch(context)


def _sign_in(app, base: str, context):
    from embodia.platform.api.console import login_link

    page = context.new_page()
    page.goto(login_link(app, "default", base))
    playwright_api.expect(page.locator("h1")).to_have_text("Project default")
    return page


def _fits(page, width: int) -> None:
    """The page never scrolls sideways as a whole (wide tables and graphs scroll inside their own box)."""
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width + 1, f"{page.url} is {overflow} px wide at a {width} px viewport"


@pytest.mark.slow
@pytest.mark.timeout(900)  # 42 s alone, minutes under load; a hung Chromium fails here with its stack trace
def test_console_end_to_end_in_chromium(server, browser):
    app, base = server
    expect = playwright_api.expect
    context, watch = _context(browser, 1280)
    page = _sign_in(app, base, context)

    # a one-time link is void after its use
    other, other_watch = _context(browser, 1280)
    from embodia.platform.api.console import login_link
    link = login_link(app, "default", base)
    first = other.new_page()
    first.goto(link)
    second = browser.new_context().new_page()
    second.goto(link)
    expect(second.locator("p.error")).to_contain_text("used already")
    second.context.close()
    other.close()

    # submit the toy quickstart and watch its DAG finish live (htmx polling, no reload)
    page.goto(f"{base}/console/pipelines")
    page.get_by_label("Pipeline YAML").fill(TINY_QUICKSTART)
    page.get_by_role("button", name="Validate and run").click()
    expect(page.locator("h1")).to_contain_text("tiny-quickstart")
    expect(page.locator("#run-status")).to_have_text("running")
    job_link = page.locator("svg.graph a").first
    job_link.wait_for(timeout=60_000)
    log_page = context.new_page()
    log_page.goto(base + job_link.get_attribute("href"))
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=170_000)
    for step in ("demos", "policy", "onnx", "evaluate", "gate", "register", "serve"):
        expect(page.locator(f'svg.graph [data-step="{step}"]')).to_have_attribute("data-state", "ran")
    expect(log_page.locator("#job-log")).not_to_be_empty()  # the job's log arrived over SSE
    log_page.close()

    # the evaluation report: scenario table, gate verdict, and a video that plays (loaded only now)
    page.goto(f"{base}/console/reports")
    page.goto(base + page.locator("tbody tr", has_text="report").locator("a").first.get_attribute("href"))
    expect(page.locator("#gate-verdict")).to_contain_text("passed")
    video = page.locator("video").first
    assert video.get_attribute("preload") == "none" and video.get_attribute("autoplay") is None
    video.evaluate("v => v.play()")
    page.wait_for_function("v => v.currentTime > 0", arg=video.element_handle(), timeout=20_000)

    # a learning curve drawn by uPlot, values on hover
    page.goto(f"{base}/console/runs")
    page.locator("tbody a").first.click()
    expect(page.locator(".chart .uplot").first).to_be_visible()

    # promote the registered model to production; the answer carries the gate's verdict
    page.goto(f"{base}/console/registry")
    page.get_by_role("button", name="Promote pick v1").click()
    expect(page.locator("#promote-result")).to_contain_text("pick@production now points at version 1")
    expect(page.locator("#promote-result")).to_contain_text("gate")

    # lineage from the dataset to the deployment
    page.goto(f"{base}/console/lineage")
    graph = page.locator("#lineage-graph")
    expect(graph).to_be_visible()
    for kind in ("dataset", "checkpoint", "model", "deployment"):
        expect(graph.locator(f"a.{kind}").first).to_be_visible()

    # every page at a phone's width: readable, nothing wider than the screen
    phone, phone_watch = _context(browser, 390)
    phone_page = _sign_in(app, base, phone)
    for path in PAGES:
        phone_page.goto(base + path)
        expect(phone_page.locator("h1")).to_be_visible()
        _fits(phone_page, 390)
    phone.close()
    context.close()

    assert not watch.errors + phone_watch.errors + other_watch.errors
    assert not watch.foreign + phone_watch.foreign + other_watch.foreign


def test_sign_in_form_and_pages_in_chromium_without_a_pipeline(server, browser):
    """Quick: paste a token into the form, visit every page at 1280 and 390 px, sign out."""
    from embodia.platform.api.auth import create_token

    app, base = server
    token = create_token(app.state.store, "default", "read")
    for width in (1280, 390):
        context, watch = _context(browser, width)
        page = context.new_page()
        page.goto(f"{base}/console/")
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        playwright_api.expect(page.locator("h1")).to_have_text("Project default")
        cookie = next(c for c in context.cookies() if c["name"] == "embodia_console")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        for path in PAGES:
            page.goto(base + path)
            playwright_api.expect(page.locator("h1")).to_be_visible()
            _fits(page, width)
        page.get_by_role("button", name="Sign out").click()
        playwright_api.expect(page.locator("h1")).to_have_text("Sign in")
        context.close()
        assert not watch.errors and not watch.foreign
