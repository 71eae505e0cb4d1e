"""serve_in_background: ephemeral ports, clean stop, and bad models refused before any thread starts."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from embodia.serve.runtime import InvalidModelError
from embodia.serve.server import serve_in_background


def test_background_server_listens_on_a_free_port_and_stops(model_path: Path) -> None:
    threads_before = threading.active_count()
    url, stop = serve_in_background(model_path, port=0)
    assert not url.endswith(":0")
    assert httpx.get(f"{url}/healthz").status_code == 200
    stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=1.0)
    assert threading.active_count() == threads_before


def test_bad_model_raises_in_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.onnx does not exist"):
        serve_in_background(tmp_path / "nothing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_text("not onnx")
    with pytest.raises(InvalidModelError, match="broken.onnx"):
        serve_in_background(broken)


def test_port_in_use_is_a_clear_error(model_path: Path) -> None:
    url, stop = serve_in_background(model_path, port=0)
    try:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_in_background(model_path, port=port)
    finally:
        stop()
