"""The Teleoperate page and its WebSocket (FastAPI's TestClient, in process): frames and status stream, keys move
the arm, Save registers a human dataset with lineage in the caller's project only; auth, scope, origin and bad
messages are refused with a message."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from embodia.data.check import check_dataset
from embodia.platform import registry
from embodia.platform.api.app import create_app
from embodia.platform.api.auth import create_token
from embodia.platform.api.console.session import COOKIE

BASE = "http://127.0.0.1:8100"
WS = "/console/teleop/ws?task=arm-pick-place&image_size=64"


@pytest.fixture
def app(sqlite_store):
    return create_app(sqlite_store, rate_per_minute=10**6)


def _bearer(app, project: str = "alpha", scope: str = "run", name: str = "teleop test") -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(app.state.store, project, scope, name)}"}


def _next_status(ws) -> tuple[bytes, dict]:
    """The next (frame, status) pair of the stream."""
    while True:
        message = ws.receive()
        if message.get("bytes") is not None:
            frame = message["bytes"]
            status = json.loads(ws.receive_text())
            assert status["type"] == "status"
            return frame, status
        data = json.loads(message["text"])
        assert data["type"] in ("notice",), data


def _wait_for(ws, predicate, limit: int = 200) -> dict:
    for _ in range(limit):
        _, status = _next_status(ws)
        if predicate(status):
            return status
    raise AssertionError("the stream never reached the expected state")


def test_stream_drive_record_two_episodes_and_save_into_the_registry(app):
    client = TestClient(app, base_url=BASE)
    with client.websocket_connect(WS, headers=_bearer(app)) as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["task"] == "arm-pick-place" and ready["project"] == "alpha"
        frame, first = _next_status(ws)
        assert frame[:2] == b"\xff\xd8" and frame[-2:] == b"\xff\xd9"  # a whole JPEG
        ws.send_json({"type": "keys", "down": ["q"]})  # up
        moved = _wait_for(ws, lambda s: s["ee_m"][2] > first["ee_m"][2] + 0.05)
        ws.send_json({"type": "keys", "down": []})
        ws.send_json({"type": "press", "key": " "})
        _wait_for(ws, lambda s: s["gripper"] == "closed")
        ws.send_json({"type": "press", "key": "enter"})
        ended = _wait_for(ws, lambda s: s["ended"] == "end")
        assert ended["kept"] == 1 and ended["gripper"] == "open" and moved["episode"] == 0
        ws.send_json({"type": "axes", "forward": 0.0, "right": 1.0, "up": 0.0})
        _wait_for(ws, lambda s: s["step"] >= 3)
        ws.send_json({"type": "press", "key": "enter"})
        _wait_for(ws, lambda s: s["kept"] == 2)
        ws.send_json({"type": "save"})
        saved = None
        while saved is None:
            message = ws.receive()
            if message.get("text") and json.loads(message["text"])["type"] == "saved":
                saved = json.loads(message["text"])
    assert saved["episodes"] == 2 and saved["ref"].startswith("dataset:sha256:")
    info = registry.get_artifact(app.state.store, saved["sha256"])
    assert info.kind == "dataset" and info.stage == "teleop" and {"human", "teleop"} <= set(info.tags)
    config = info.manifest["config"]
    assert config["source"] == "human" and config["project"] == "alpha" and config["operator"]
    assert check_dataset(info.path).ok
    own = client.get(f"/api/v1/artifacts/{saved['sha256']}", headers=_bearer(app, "alpha", "read"))
    other = client.get(f"/api/v1/artifacts/{saved['sha256']}", headers=_bearer(app, "beta", "read"))
    assert own.status_code == 200 and other.status_code == 404
    assert not list(app.state.store.path("tmp").glob("teleop-*"))  # nothing left behind


def _refusal(app, headers: dict[str, str], url: str = WS) -> str:
    client = TestClient(app, base_url=BASE)
    with client.websocket_connect(url, headers=headers) as ws:
        message = ws.receive_json()
    assert message["type"] == "error"
    return message["message"]


def test_socket_needs_a_token_with_the_run_scope(app):
    assert "sign in" in _refusal(app, {})
    assert "scope 'run'" in _refusal(app, _bearer(app, scope="read"))
    assert "unknown or revoked" in _refusal(app, {"Authorization": "Bearer emb_nope"})


def test_socket_from_another_site_is_refused(app):
    headers = {**_bearer(app), "Origin": "http://evil.example"}
    assert "cross-site" in _refusal(app, headers)


def test_bad_task_and_bad_messages_are_named(app):
    assert "cannot be teleoperated" in _refusal(app, _bearer(app), "/console/teleop/ws?task=arm-reach")
    assert "image_size" in _refusal(app, _bearer(app), "/console/teleop/ws?image_size=-3")
    client = TestClient(app, base_url=BASE)
    with client.websocket_connect(WS, headers=_bearer(app)) as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "axes", "forward": "fast", "right": 0, "up": 0})
        while True:
            message = ws.receive()
            if message.get("text") and json.loads(message["text"])["type"] == "error":
                assert "'forward' must be a finite number" in json.loads(message["text"])["message"]
                break


def test_save_before_any_kept_episode_is_a_notice_and_recording_goes_on(app):
    client = TestClient(app, base_url=BASE)
    with client.websocket_connect(WS, headers=_bearer(app)) as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "save"})
        while True:
            message = ws.receive()
            if message.get("text") and json.loads(message["text"])["type"] == "notice":
                break
        _next_status(ws)  # still streaming


def test_teleop_page_with_a_console_session(app):
    client = TestClient(app, base_url=BASE)
    token = create_token(app.state.store, "alpha", "run")
    client.post("/console/login", data={"token": token}, follow_redirects=False)
    page = client.get("/console/teleop")
    assert page.status_code == 200 and 'id="teleop-canvas"' in page.text and "arm-pick-place" in page.text
    assert "/console/static/teleop.js" in page.text and 'aria-current="page"' in page.text
    # the console cookie signs the socket in (TestClient's socket does not send its cookie jar: set it by hand)
    with client.websocket_connect(WS, headers={"Cookie": f"{COOKIE}={client.cookies[COOKIE]}"}) as ws:
        assert ws.receive_json()["type"] == "ready"
    reader = TestClient(app, base_url=BASE)
    reader.post("/console/login", data={"token": create_token(app.state.store, "alpha", "read")})
    assert "needs a token with the run scope" in reader.get("/console/teleop").text


def test_a_session_nobody_drives_ends_with_a_message(app):
    app.state.teleop_idle_timeout_s = 0.5
    client = TestClient(app, base_url=BASE)
    with client.websocket_connect(WS, headers=_bearer(app)) as ws:
        assert ws.receive_json()["type"] == "ready"
        while True:
            message = ws.receive()
            if message.get("text") and json.loads(message["text"])["type"] == "error":
                assert "no key or gamepad input" in json.loads(message["text"])["message"]
                break


def test_a_third_simultaneous_session_is_refused_until_one_ends(app):
    client = TestClient(app, base_url=BASE)
    with client.websocket_connect(WS, headers=_bearer(app)) as first, \
            client.websocket_connect(WS, headers=_bearer(app)) as second:
        assert first.receive_json()["type"] == "ready" and second.receive_json()["type"] == "ready"
        assert "sessions are running" in _refusal(app, _bearer(app))
    with client.websocket_connect(WS, headers=_bearer(app)) as again:  # the slots came back
        assert again.receive_json()["type"] == "ready"
