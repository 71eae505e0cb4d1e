"""Browser teleoperation in real headless Chromium (Debian `chromium`): sign in, drive the arm with simulated key
presses, record two episodes, save, and find the dataset in the registry; at 1280 px and 390 px, with no console
errors and no request leaving 127.0.0.1. The stream's frame rate is printed to the test log (not asserted)."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from embodia.platform import registry
from embodia.platform.api.app import create_app
from embodia.platform.api.auth import create_token
from embodia.platform.deploy import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
pytestmark = pytest.mark.slow



@pytest.fixture
def server(sqlite_store):
    """The API + console app served by uvicorn in a thread on a free 127.0.0.1 port."""
    import uvicorn

    app = create_app(sqlite_store, rate_per_minute=10**6)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield app, f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _watch(page, problems: list[str]) -> None:
    """Record console errors, page errors and any request or socket to a host other than 127.0.0.1."""
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("request", lambda request: problems.append(f"request to {request.url}")
            if urlsplit(request.url).hostname not in ("127.0.0.1", None) and not request.url.startswith("data:") else None)
    page.on("websocket", lambda ws: problems.append(f"socket to {ws.url}")
            if urlsplit(ws.url).hostname != "127.0.0.1" else None)


def _wait_for_frames(page, count: int, timeout_s: float = 60.0) -> None:
    """Poll the canvas's frame counter (the page's CSP forbids the eval behind wait_for_function)."""
    deadline = time.monotonic() + timeout_s
    while int(page.get_attribute("#teleop-canvas", "data-frames") or 0) <= count:
        assert time.monotonic() < deadline, f"fewer than {count} frames arrived in {timeout_s} s"
        page.wait_for_timeout(100)


def _hold(page, key: str, seconds: float) -> None:
    page.keyboard.down(key)
    page.wait_for_timeout(int(seconds * 1000))
    page.keyboard.up(key)


@pytest.mark.parametrize("width", [1280, 390])
def test_record_two_episodes_in_the_browser_and_find_them_in_the_registry(server, browser, width):
    app, base = server
    token = create_token(app.state.store, "lab", "run", name="browser operator")
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    _watch(page, problems)
    page.goto(f"{base}/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")
    page.click("a[href='/console/teleop']")
    page.select_option("#teleop-task", "arm-pick-place")
    page.click("#teleop-connect")
    _wait_for_frames(page, 5)
    started_s, started_frames = time.perf_counter(), int(page.get_attribute("#teleop-canvas", "data-frames"))

    _hold(page, "q", 0.6)  # up
    page.keyboard.press(" ")  # close the gripper
    expect(page.locator("#teleop-gripper")).to_contain_text("closed")
    page.keyboard.press("Enter")
    expect(page.locator("#teleop-kept")).to_have_text("1")
    _hold(page, "ArrowRight", 0.4)
    _hold(page, "w", 0.3)
    page.keyboard.press("Enter")
    expect(page.locator("#teleop-kept")).to_have_text("2")

    frames = int(page.get_attribute("#teleop-canvas", "data-frames")) - started_frames
    fps = frames / (time.perf_counter() - started_s)
    print(f"\nteleop stream at {width} px: {fps:.1f} frames/s received over {frames} frames; page shows "
          f"{page.get_attribute('#teleop-canvas', 'data-fps')} frames/s")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # no sideways scroll

    page.click("#teleop-save")
    expect(page.locator("#teleop-result")).to_contain_text("Saved", timeout=60_000)
    sha256 = page.get_attribute("#teleop-result", "data-sha256")
    info = registry.get_artifact(app.state.store, sha256)
    assert info.kind == "dataset" and "human" in info.tags
    assert info.manifest["config"]["project"] == "lab" and info.manifest["config"]["operator"]
    assert info.manifest["summary"]["episodes"] == 2
    page.goto(f"{base}/console/")  # the project page counts it among its datasets
    assert page.locator("a.tile[href='/console/datasets'] .big").inner_text() == "1"
    page.goto(f"{base}/console/datasets")  # listed, and its page opens with both episodes
    page.click(f"a[href='/console/datasets/{sha256}']")
    expect(page.locator("main")).to_contain_text("pick up the cube")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    context.close()
    assert problems == []


FAKE_GAMEPAD = """
(() => {
  const buttons = Array.from({length: 17}, () => ({pressed: false, touched: false, value: 0}));
  window.__pad = {id: "test pad", index: 0, connected: true, mapping: "standard", axes: [0, 0, 0, 0], buttons};
  navigator.getGamepads = () => [window.__pad];
})();
"""


def _grip_point(page) -> list[float]:
    return [float(v) for v in page.inner_text("#teleop-ee").removesuffix(" m").split(",")]


def test_a_gamepad_stick_moves_the_gripper_and_its_a_button_closes_it(server, browser):
    app, base = server
    token = create_token(app.state.store, "lab", "run")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(FAKE_GAMEPAD)  # the Gamepad API as a connected standard pad would answer
    page = context.new_page()
    problems: list[str] = []
    _watch(page, problems)
    page.goto(f"{base}/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.goto(f"{base}/console/teleop")
    page.click("#teleop-connect")
    _wait_for_frames(page, 5)
    start = _grip_point(page)
    page.evaluate("window.__pad.axes = [0, 0, 0, -1]")  # right stick pushed up: raise the gripper
    page.wait_for_timeout(800)
    page.evaluate("window.__pad.axes = [0, 0, 0, 0]")
    page.wait_for_timeout(300)
    assert _grip_point(page)[2] > start[2] + 0.03
    page.evaluate("window.__pad.buttons[0] = {pressed: true, touched: true, value: 1}")
    expect(page.locator("#teleop-gripper")).to_contain_text("closed")
    context.close()
    assert problems == []
