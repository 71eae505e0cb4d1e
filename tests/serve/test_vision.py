"""Camera policies served end to end: a real two-camera ONNX file (the core contract: `obs` plus one uint8
input per image key), real requests carrying images over JSON (base64 and nested lists), binary, /stream
and PolicyClient, on both frameworks; replies equal ONNX Runtime called in-process."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from websockets.sync.client import connect

from embodia.core.policy import OnnxPolicy
from embodia.serve.client import PolicyClient, PolicyServerError
from embodia.serve.server import serve_in_background
from embodia.serve.testing import make_vision_onnx

OBS_DIM, ACT_DIM, SIZE = 5, 2, 12
KEYS = ("observation.images.front", "observation.images.wrist")


@pytest.fixture(scope="module")
def vision_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-camera policy file written in the contract's form."""
    return make_vision_onnx(tmp_path_factory.mktemp("vision") / "vision.onnx", OBS_DIM, ACT_DIM, KEYS, SIZE, seed=1)


@pytest.fixture(scope="module")
def vision_reference(vision_path: Path) -> OnnxPolicy:
    """The same file run in-process."""
    return OnnxPolicy(vision_path)


@pytest.fixture(scope="module", params=["asgi", "fastapi"])
def vision_url(request: pytest.FixtureRequest, vision_path: Path):
    """A live server for the camera policy, per framework."""
    url, stop = serve_in_background(vision_path, framework=request.param, max_batch=16)
    yield url
    stop()


@pytest.fixture
def camera_batch() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Three observations (3, OBS_DIM) and their images {key: (3, SIZE, SIZE, 3) uint8}."""
    rng = np.random.default_rng(11)
    return (rng.normal(size=(3, OBS_DIM)).astype(np.float32),
            {key: rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8) for key in KEYS})


def _b64(images: dict[str, np.ndarray]) -> dict[str, str]:
    return {key: base64.b64encode(frames.tobytes()).decode() for key, frames in images.items()}


def test_metadata_reports_the_cameras(vision_url: str) -> None:
    metadata = httpx.get(f"{vision_url}/metadata").json()
    assert metadata["image_keys"] == list(KEYS) and metadata["image_size"] == SIZE
    assert metadata["images"][KEYS[1]] == {"name": KEYS[1], "shape": [SIZE, SIZE, 3], "dtype": "uint8"}


def test_json_base64_and_nested_list_images_equal_in_process(vision_url: str, vision_reference: OnnxPolicy,
                                                             camera_batch) -> None:
    obs, images = camera_batch
    expected = vision_reference.act(obs, images)
    batch = httpx.post(f"{vision_url}/act", json={"obs": obs.tolist(), "images": _b64(images)})
    assert batch.status_code == 200
    np.testing.assert_array_equal(np.asarray(batch.json()["action"], np.float32), expected)
    single = httpx.post(f"{vision_url}/act", json={"obs": obs[1].tolist(),
                                                   "images": {key: frames[1].tolist() for key, frames in images.items()}})
    assert single.status_code == 200
    np.testing.assert_array_equal(np.asarray(single.json()["action"], np.float32), expected[1])


def test_the_images_change_the_action(vision_url: str, camera_batch) -> None:
    obs, images = camera_batch
    dark = {key: np.zeros_like(frames) for key, frames in images.items()}
    actions = [httpx.post(f"{vision_url}/act", json={"obs": obs.tolist(), "images": _b64(frames)}).json()["action"]
               for frames in (images, dark)]
    assert not np.allclose(actions[0], actions[1])


def test_binary_body_with_image_blocks_equals_in_process(vision_url: str, vision_reference: OnnxPolicy,
                                                         camera_batch) -> None:
    obs, images = camera_batch
    body = obs.tobytes() + b"".join(images[key].tobytes() for key in KEYS)
    reply = httpx.post(f"{vision_url}/act", content=body,
                       headers={"content-type": "application/octet-stream", "x-embodia-shape": f"3,{OBS_DIM}"})
    assert reply.status_code == 200 and reply.headers["x-embodia-shape"] == f"3,{ACT_DIM}"
    np.testing.assert_array_equal(np.frombuffer(reply.content, "<f4").reshape(3, ACT_DIM),
                                  vision_reference.act(obs, images))


def test_stream_takes_binary_and_json_frames_with_images(vision_url: str, vision_reference: OnnxPolicy,
                                                         camera_batch) -> None:
    obs, images = camera_batch
    expected = vision_reference.act(obs, images)
    with connect(vision_url.replace("http", "ws", 1) + "/stream") as websocket:
        websocket.send(obs[:1].tobytes() + b"".join(images[key][:1].tobytes() for key in KEYS))
        np.testing.assert_array_equal(np.frombuffer(websocket.recv(timeout=5), "<f4"), expected[0])
        websocket.send(obs.tobytes())  # images missing: the length is no whole number of rows
        assert "image block(s)" in orjson.loads(websocket.recv(timeout=5))["error"]
        websocket.send(orjson.dumps({"obs": obs.tolist(), "images": _b64(images)}).decode())
        np.testing.assert_array_equal(np.asarray(orjson.loads(websocket.recv(timeout=5))["action"], np.float32),
                                      expected)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_policy_client_sends_images(vision_url: str, vision_reference: OnnxPolicy, camera_batch,
                                    binary: bool) -> None:
    obs, images = camera_batch
    expected = vision_reference.act(obs, images)
    with PolicyClient(vision_url, binary=binary) as client:
        assert client.image_keys == KEYS
        np.testing.assert_array_equal(client.act(obs, images), expected)
        np.testing.assert_array_equal(client.act(obs[2], {key: frames[2] for key, frames in images.items()}),
                                      expected[2])
        with client.stream() as stream:
            np.testing.assert_array_equal(stream.act(obs, images), expected)
        with pytest.raises(PolicyServerError, match=r"422: .*(image block\(s\)|needs \"images\")"):
            client.act(obs)


def test_missing_or_misshapen_images_are_422_naming_the_key(vision_url: str, camera_batch) -> None:
    obs, images = camera_batch
    wrong = {**_b64(images), KEYS[1]: base64.b64encode(images[KEYS[1]][:, :6].tobytes()).decode()}
    reply = httpx.post(f"{vision_url}/act", json={"obs": obs.tolist(), "images": wrong})
    assert reply.status_code == 422 and KEYS[1] in reply.json()["error"] and f"(3, {SIZE}, {SIZE}, 3)" in \
        reply.json()["error"]
    reply = httpx.post(f"{vision_url}/act", json={"obs": obs.tolist(), "images": {KEYS[0]: _b64(images)[KEYS[0]]}})
    assert reply.status_code == 422 and f"missing ['{KEYS[1]}']" in reply.json()["error"]


@pytest.mark.slow
def test_serves_a_vision_bc_policy_exported_by_embodia(tmp_path: Path) -> None:
    """A camera policy trained by vision BC and exported by `export_bc` is served with its images."""
    from embodia.learn.bc import export_bc, load_bc, train_bc
    from embodia.learn.vision import VisionDemonstrations

    rng = np.random.default_rng(0)
    frames, key = 48, "observation.images.front"
    images = rng.integers(0, 256, (frames, 32, 32, 3), dtype=np.uint8)
    demos = VisionDemonstrations(rng.normal(size=(frames, 4)), np.tanh(rng.normal(size=(frames, 2))),
                                 np.repeat(np.arange(4), frames // 4), task=None, action_low=-np.ones(2),
                                 action_high=np.ones(2), images={key: images})
    checkpoint = train_bc(demos, {"num_steps": 5, "batch_size": 16, "hidden_sizes": [16], "image_keys": [key],
                                  "image_size": 32, "image_channels": 4}, tmp_path / "bc")
    exported = export_bc(checkpoint, tmp_path / "vision_bc.onnx")
    obs, frames_in = demos.observations[:3], {key: images[:3]}
    expected = OnnxPolicy(exported).act(obs, frames_in)
    np.testing.assert_allclose(expected, load_bc(checkpoint).predict_chunk(obs, frames_in)[:, 0], atol=1e-5)
    url, stop = serve_in_background(exported)
    try:
        with PolicyClient(url) as client:
            assert client.image_keys == (key,) and client.metadata()["algo"] == "bc"
            np.testing.assert_array_equal(client.act(obs, frames_in), expected)
        reply = httpx.post(f"{url}/act", json={"obs": obs[0].tolist(), "images": {key: base64.b64encode(
            images[0].tobytes()).decode()}})
        np.testing.assert_array_equal(np.asarray(reply.json()["action"], np.float32), expected[0])
    finally:
        stop()
