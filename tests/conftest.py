"""Shared fixtures: small batches of real tasks, and one local multi-node Ray cluster per session."""

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

import embodia  # noqa: F401  (registers Gymnasium ids, picks the GL backend)

RAY_REGIONS = ("eu-france", "sa-brazil")  # one 1-CPU node labelled region=<name> each
RAY_OBJECT_STORE_BYTES = 80_000_000


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[object]:
    """One local multi-node Ray cluster (`ray.cluster_utils.Cluster`) for the whole session, started on first use
    (~20 s, ~1.2 GiB): a head with no CPUs and one 1-CPU node per region in RAY_REGIONS, labelled `region=<name>`;
    the driver is connected to it. Shut down at the end, leaving no Ray process behind."""
    import ray  # the extra embodia[ray], installed by `make test`: a missing Ray fails loudly, never skips
    from ray.cluster_utils import Cluster

    head = {"num_cpus": 0, "object_store_memory": RAY_OBJECT_STORE_BYTES, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for region in RAY_REGIONS:
            cluster.add_node(num_cpus=1, object_store_memory=RAY_OBJECT_STORE_BYTES, labels={"region": region})
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


CHROMIUM = "/usr/bin/chromium"


# module scope: a live sync Playwright owns the thread's event loop, so it must end before other modules run
# asyncio.run() or start their own Playwright
@pytest.fixture(scope="module")
def phone_browser():
    """Real headless Chromium (Debian `chromium`, driven by Playwright) with a 390 px wide phone viewport: a
    function that opens a static HTML file and returns (page width in px, console and page errors)."""
    import shutil

    if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
        pytest.fail("Debian chromium is not installed: run `make install` (it adds it) or apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                               "--disable-gpu"])

        def open_page(path) -> tuple[int, list[str]]:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"file://{path}", wait_until="load")
            width = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
            context.close()
            return width, errors

        yield open_page
        browser.close()
