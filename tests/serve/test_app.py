"""The HTTP and WebSocket endpoints of a live server, on both the raw ASGI app and FastAPI."""

from __future__ import annotations

import re

import httpx
import numpy as np
import orjson
import pytest
from websockets.sync.client import connect

from embodia.core.manifest import hash_file
from embodia.core.policy import OnnxPolicy

from .conftest import ACT_DIM, MAX_BATCH, OBS_DIM


def _counter(metrics_text: str, endpoint: str, status: int) -> int:
    match = re.search(rf'embodia_requests_total{{endpoint="{re.escape(endpoint)}",status="{status}"}} (\d+)',
                      metrics_text)
    return int(match.group(1)) if match else 0


def test_json_single_and_batch_equal_in_process_onnxruntime(server_url: str, reference: OnnxPolicy,
                                                            obs_batch: np.ndarray) -> None:
    single = httpx.post(f"{server_url}/act", json={"obs": obs_batch[0].tolist()})
    batch = httpx.post(f"{server_url}/act", json={"obs": obs_batch.tolist()})
    assert single.status_code == batch.status_code == 200
    expected = reference.act(obs_batch)
    np.testing.assert_array_equal(np.asarray(single.json()["action"], np.float32), expected[0])
    np.testing.assert_array_equal(np.asarray(batch.json()["action"], np.float32), expected)


def test_binary_batch_equals_in_process_onnxruntime(server_url: str, reference: OnnxPolicy,
                                                    obs_batch: np.ndarray) -> None:
    reply = httpx.post(f"{server_url}/act", content=obs_batch.tobytes(),
                       headers={"content-type": "application/octet-stream", "x-embodia-shape": f"5,{OBS_DIM}"})
    assert reply.status_code == 200 and reply.headers["x-embodia-shape"] == f"5,{ACT_DIM}"
    np.testing.assert_array_equal(np.frombuffer(reply.content, "<f4").reshape(5, ACT_DIM), reference.act(obs_batch))


@pytest.mark.parametrize(("body", "content_type", "status", "needle"), [
    (b'{"obs": [1, 2', "application/json", 400, "not valid JSON"),
    (b"", "application/json", 400, "empty request body"),
    (b'{"obs": [1, 2, 3]}', "application/json", 422, f"expected [{OBS_DIM}]"),
    (orjson.dumps({"obs": ["x"] * OBS_DIM}), "application/json", 422, "only numbers"),
    (b'{"obs": [NaN]}', "application/json", 400, "NaN and Infinity are not JSON"),
    (orjson.dumps({"obs": [[0.0] * OBS_DIM] * (MAX_BATCH + 1)}), "application/json", 413, f"max_batch={MAX_BATCH}"),
    (np.full(OBS_DIM, np.inf, np.float32).tobytes(), "application/octet-stream", 422, "non-finite"),
    (b"obs=1", "text/plain", 415, "not supported"),
])
def test_bad_requests_get_4xx_json_with_a_message(server_url: str, body: bytes, content_type: str, status: int,
                                                  needle: str) -> None:
    reply = httpx.post(f"{server_url}/act", content=body, headers={"content-type": content_type})
    assert reply.status_code == status
    assert needle in reply.json()["error"]


def test_body_over_the_size_limit_is_refused_before_parsing(server_url: str) -> None:
    reply = httpx.post(f"{server_url}/act", content=b" " * 200_000, headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert "exceeds the server limit" in reply.json()["error"]


def test_metadata_describes_the_observation_and_action_spec(server_url: str, reference: OnnxPolicy) -> None:
    metadata = httpx.get(f"{server_url}/metadata").json()
    assert metadata["task"] == "toy-task" and metadata["max_batch"] == MAX_BATCH
    assert metadata["observation"] == {"name": "obs", "shape": [OBS_DIM], "dtype": "float32"}
    assert metadata["action"]["shape"] == [ACT_DIM] and metadata["action"]["low"] == [-0.5] * ACT_DIM
    assert metadata["model"] == {"file": reference.path.name, "sha256": hash_file(reference.path)}
    assert metadata["image_keys"] == [] and metadata["image_size"] is None


def test_healthz_answers_ok(server_url: str) -> None:
    reply = httpx.get(f"{server_url}/healthz")
    assert reply.status_code == 200 and reply.json()["status"] == "ok"


def test_metrics_counters_increase_with_requests(server_url: str, obs_batch: np.ndarray) -> None:
    before = httpx.get(f"{server_url}/metrics").text
    for _ in range(3):
        httpx.post(f"{server_url}/act", json={"obs": obs_batch[0].tolist()})
    httpx.post(f"{server_url}/act", json={"obs": [1.0]})
    after = httpx.get(f"{server_url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    assert _counter(after.text, "/act", 200) == _counter(before, "/act", 200) + 3
    assert _counter(after.text, "/act", 422) == _counter(before, "/act", 422) + 1
    assert 'embodia_request_duration_seconds_bucket{endpoint="/act",le="+Inf"}' in after.text
    assert "embodia_requests_in_flight 1" in after.text  # the scrape itself


def test_stream_returns_one_action_frame_per_observation_frame(server_url: str, reference: OnnxPolicy,
                                                               obs_batch: np.ndarray) -> None:
    with connect(server_url.replace("http", "ws", 1) + "/stream") as websocket:
        for row in obs_batch:
            websocket.send(row.tobytes())
            action = np.frombuffer(websocket.recv(timeout=5), "<f4")
            np.testing.assert_array_equal(action, reference.act(row[None])[0])
        websocket.send(b"\x00" * 5)
        error = orjson.loads(websocket.recv(timeout=5))
        assert error["status"] == 422 and "multiple of" in error["error"]
        websocket.send(orjson.dumps({"obs": obs_batch[0].tolist()}).decode())  # the stream stays usable
        np.testing.assert_array_equal(np.asarray(orjson.loads(websocket.recv(timeout=5))["action"], np.float32),
                                      reference.act(obs_batch[:1])[0])


def test_unknown_path_and_wrong_method_are_4xx(asgi_url: str) -> None:
    assert httpx.get(f"{asgi_url}/nope").status_code == 404
    wrong_method = httpx.get(f"{asgi_url}/act")
    assert wrong_method.status_code == 405 and "use POST" in wrong_method.json()["error"]
