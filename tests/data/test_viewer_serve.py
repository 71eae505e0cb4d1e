"""`embodia data show --serve`: only the page and the dataset's own files, only to requests addressed to it."""

from __future__ import annotations

import shutil
import threading

import httpx
import pytest

from embodia.core.errors import UserError
from embodia.data.viewer import FILES_PREFIX, DatasetServer, write_page


@pytest.fixture(scope="module")
def served(synthetic_dataset, tmp_path_factory):
    """A copy of the dataset beside a secret file, with a dotfile and an outward symlink inside; served on a free port."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "ds"
    shutil.copytree(synthetic_dataset[0], root)
    (base / "secret.txt").write_text("parent folder secret")
    (root / ".env").write_text("TOKEN=dotfile secret")
    (root / "meta" / "link.txt").symlink_to(base / "secret.txt")
    page = write_page(root, base / "pages" / "view.html", max_episodes=1, files_base=FILES_PREFIX)
    server = DatasetServer(page, root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client, port, page, root
    server.shutdown()
    server.server_close()


def _get(client: httpx.Client, target: str, **headers: str) -> httpx.Response:
    """GET with the request target sent byte for byte (no client-side normalisation of '..')."""
    return client.get(target, headers=headers, extensions={"target": target.encode()})


def test_page_and_dataset_files_are_served(served):
    client, port, page, root = served
    response = _get(client, "/")
    assert response.status_code == 200 and response.text == page.read_text()
    assert response.headers["content-type"].startswith("text/html")
    assert _get(client, "/view.html").status_code == 200
    info = _get(client, "/dataset/meta/info.json")
    assert info.status_code == 200 and info.content == (root / "meta/info.json").read_bytes()
    video = _get(client, "/dataset/videos/observation.images.front/chunk-000/file-000.mp4")
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    links = [part.split('"')[0] for part in page.read_text().split('href="')[1:]]
    assert links and all(_get(client, link).status_code == 200 for link in links)


@pytest.mark.parametrize("target", [
    "/secret.txt", "/../secret.txt", "/dataset/../secret.txt", "/dataset/..%2fsecret.txt", "/dataset/%2e%2e/secret.txt",
    "/dataset/meta/..%2F..%2Fsecret.txt", "/dataset/.env", "/dataset/%2eenv", "/dataset/meta/link.txt",
    "/dataset/meta/../meta/info.json", "/dataset/", "/dataset", "/dataset/meta/", "/dataset/meta", "/pages/", "//etc/passwd", "/dataset//meta/info.json",
])
def test_nothing_else_is_served(served, target):
    client, *_ = served
    response = _get(client, target)
    assert response.status_code == 404
    assert b"secret" not in response.content and b"Directory listing" not in response.content


@pytest.mark.parametrize("host", ["evil.example:{port}", "127.0.0.1.nip.io:{port}", "127.0.0.1:1", "localhost", ""])
def test_foreign_host_headers_are_refused(served, host):
    client, port, *_ = served
    response = _get(client, "/dataset/meta/info.json", Host=host.format(port=port))
    assert response.status_code == 403 and b"codebase_version" not in response.content


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_own_host_names_are_accepted(served, host):
    client, port, *_ = served
    assert _get(client, "/", Host=host.format(port=port)).status_code == 200


def test_invalid_port_is_a_user_error(synthetic_dataset, tmp_path):
    with pytest.raises(UserError, match="--port 99999"):
        DatasetServer(tmp_path / "page.html", synthetic_dataset[0], "127.0.0.1", 99999)
