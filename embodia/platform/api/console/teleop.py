"""The console's Teleoperate page and its WebSocket: the browser sends key and gamepad state, the server steps a
`TeleopSession` at the task's control rate and sends each rendered frame back as a binary JPEG message with a
JSON status; "Save" writes the LeRobot dataset and registers it with lineage (source human, project, operator).

Protocol (text messages are JSON):
  browser -> server  {"type": "keys", "down": ["w", ...]}    keys held now (KeyboardEvent.key, lower case)
                     {"type": "press", "key": " "}            Space: gripper; Enter: keep episode; Backspace: discard
                     {"type": "axes", "forward": f, "right": r, "up": u}   gamepad, each in [-1, 1]
                     {"type": "save"}                         write + register the dataset, then the socket closes
  server -> browser  {"type": "ready", ...} once; then per step a binary JPEG and {"type": "status", ...};
                     {"type": "saved", ...} or {"type": "error", "message": ...} before closing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from embodia.core.errors import UserError
from embodia.platform import registry
from embodia.platform.api.auth import AuthError, Caller, authorize
from embodia.platform.api.console.session import COOKIE, console_caller
from embodia.platform.models import ApiToken
from embodia.platform.store import Store
from embodia.platform.teleop import register_recording
from embodia.sim.render import RenderError

MAX_SESSIONS = 2  # each session is one sim + one software-GL renderer: two keep a 2-core machine responsive
MAX_MESSAGE_BYTES = 4096
IDLE_TIMEOUT_S = 600.0  # a session nobody drives stops, freeing its slot and its CPU
CLOSE_POLICY = 1008

log = logging.getLogger("embodia.console.teleop")
router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/teleop", response_class=HTMLResponse)
def teleop_page(request: Request) -> Response:
    """Pick a manipulation task, drive it, record episodes, save them as a registered dataset."""
    from embodia.data.teleop import KEY_HELP, TeleopConfig, teleop_task_names
    from embodia.platform.api.console.pages import render

    caller = console_caller(request)
    defaults = TeleopConfig()
    return render(request, "teleop.html", caller, section="Teleoperate", title="Teleoperate",
                  tasks=teleop_task_names(), default_task=defaults.task, image_size=defaults.image_size,
                  key_help=KEY_HELP, can_record=caller.allows("run"))


# ------------------------------------------------------------------------------------------------ the socket


class SessionSlots:
    """How many teleoperation sessions run at once on this server (each costs about one CPU core)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.used -= 1


def socket_caller(websocket: WebSocket, scope: str) -> Caller:
    """The caller of a WebSocket: the console cookie (or an Authorization: Bearer header), from this site only."""
    origin = websocket.headers.get("origin")
    if origin and urlsplit(origin).netloc != websocket.headers.get("host", ""):
        raise AuthError(f"cross-site WebSocket from {origin} refused", 403)
    kind, _, bearer = websocket.headers.get("authorization", "").partition(" ")
    token = bearer.strip() if kind.lower() == "bearer" else websocket.cookies.get(COOKIE, "").strip()
    if not token:
        raise AuthError("sign in to the console (or send 'Authorization: Bearer <token>') to teleoperate")
    return authorize(websocket, token, scope)


def operator_of(store: Store, caller: Caller) -> tuple[str, str]:
    """(user who made the caller's token, the token's name): who drives, as recorded in the dataset."""
    with store.session() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.id == caller.token_id))
        return (row.created_by, row.name) if row is not None else ("", "")


@router.websocket("/teleop/ws")
async def teleop_socket(websocket: WebSocket) -> None:
    """One operator's teleoperation session (query: task, image_size); needs the run scope."""
    await websocket.accept()
    try:
        caller = socket_caller(websocket, "run")
    except AuthError as error:
        return await _refuse(websocket, str(error))
    slots: SessionSlots = _slots(websocket)
    if not slots.take():
        return await _refuse(websocket, f"{slots.limit} teleoperation sessions are running on this server already; "
                                        "try again when one has ended")
    try:
        await Teleoperation(websocket, caller, getattr(websocket.app.state, "teleop_idle_timeout_s",
                                                       IDLE_TIMEOUT_S)).run()
    finally:
        slots.give_back()


def _slots(websocket: WebSocket) -> SessionSlots:
    state = websocket.app.state
    if not hasattr(state, "teleop_slots"):
        state.teleop_slots = SessionSlots()
    return state.teleop_slots


async def _refuse(websocket: WebSocket, message: str) -> None:
    await websocket.send_json({"type": "error", "message": message})
    await websocket.close(code=CLOSE_POLICY)


class Teleoperation:
    """Drives one `TeleopSession` for one WebSocket: GL and physics on one worker thread, I/O on the event loop."""

    def __init__(self, websocket: WebSocket, caller: Caller, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.websocket = websocket
        self.idle_timeout_s = idle_timeout_s
        self.caller = caller
        self.store: Store = websocket.app.state.store
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="teleop")  # the renderer's GL context lives here
        self.workdir = self.store.path("tmp") / f"teleop-{secrets.token_hex(8)}"
        self.session = None
        self.controls = None
        self.events: list[str] = []
        self.save_asked = False
        self.closed = False
        self.last_input_s = time.monotonic()

    async def call(self, function, *args):
        """Run `function(*args)` on the session's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self.worker, function, *args)

    async def run(self) -> None:
        try:
            await self._open()
            await self._loop()
        except WebSocketDisconnect:
            pass
        except (UserError, RenderError) as error:
            await self._send_error(str(error))
        except Exception:
            log.exception("teleoperation session of project %s failed", self.caller.project)
            await self._send_error("internal error in the teleoperation session (logged on the server)")
        finally:
            self.closed = True
            if self.session is not None:
                await self.call(self.session.close)
            self.worker.shutdown(wait=True)
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def _open(self) -> None:
        from embodia.core.config import validate_config
        from embodia.data.teleop import TeleopConfig, TeleopControls, TeleopSession

        params = self.websocket.query_params
        user, token_name = await asyncio.to_thread(operator_of, self.store, self.caller)
        values: dict[str, Any] = {"task": params.get("task", TeleopConfig().task)[:100], "project": self.caller.project,
                                  "operator": user}
        if "image_size" in params:
            values["image_size"] = _integer(params["image_size"], "image_size")
        config = validate_config(TeleopConfig, values, where="teleop")
        self.token_name = token_name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.session = await self.call(TeleopSession, config, self.workdir / "dataset")
        self.controls = TeleopControls(self.session.view_to_world)
        await self.websocket.send_json({"type": "ready", "task": config.task, "camera": config.camera,
                                        "image_size": config.image_size, "control_hz": 1.0 / self.session.env.sim.dt,
                                        "operator": user, "project": self.caller.project})

    async def _loop(self) -> None:
        receiver = asyncio.create_task(self._receive())
        try:
            period_s = self.session.env.sim.dt
            next_s = time.perf_counter()
            frames = FrameClock()
            while not receiver.done():
                if time.monotonic() - self.last_input_s > self.idle_timeout_s:
                    raise UserError(f"no key or gamepad input for {self.idle_timeout_s:.0f} s: the session ended "
                                    "(kept episodes were not saved); press Start to record again")
                if self.save_asked:
                    self.save_asked = False
                    if self.session.kept_keys:
                        return await self._save()
                    await self.websocket.send_json({"type": "notice", "message": "no episode kept yet: drive, then "
                                                    "press Enter to keep the episode before saving"})
                jpeg, status = await self.call(self._tick)
                await self.websocket.send_bytes(jpeg)
                await self.websocket.send_text(json.dumps({"type": "status", **status, "fps": frames.tick()}))
                next_s = await _sleep_until(next_s + period_s)
            receiver.result()  # a disconnect or a bad message ends the session with its error
        finally:
            receiver.cancel()

    def _tick(self) -> tuple[bytes, dict[str, Any]]:
        """One control step (or an episode event) on the worker thread: the new frame and the status."""
        event = self.events.pop(0) if self.events else None
        if event is not None:
            status = self.session.end_episode(keep=event == "end")
        else:
            status = self.session.step(self.controls.command())
        if status.ended:
            self.controls.new_episode()
        return self.session.jpeg(), status.to_dict()

    async def _receive(self) -> None:
        while True:
            text = await self.websocket.receive_text()
            self._handle(_message(text))

    def _handle(self, message: dict[str, Any]) -> None:
        self.last_input_s = time.monotonic()
        kind = message.get("type")
        if kind == "keys":
            self.controls.set_held(_strings(message.get("down"), "down"))
        elif kind == "press":
            event = self.controls.press(str(message.get("key", ""))[:20])
            if event is not None and len(self.events) < 8:
                self.events.append(event)
        elif kind == "axes":
            self.controls.set_axes(*(_number(message.get(name), name) for name in ("forward", "right", "up")))
        elif kind == "save":
            self.save_asked = True
        else:
            raise UserError(f"unknown teleop message type {kind!r}; use keys, press, axes or save")

    async def _save(self) -> None:
        """Write the dataset, register it in the caller's project, tell the browser, close."""
        manifest = await self.call(self.session.save)
        info = await asyncio.to_thread(self._register)
        await asyncio.to_thread(shutil.rmtree, self.workdir, True)  # the dataset moved into the registry
        await self.websocket.send_json({"type": "saved", "sha256": info.sha256, "ref": info.ref, "name": info.name,
                                        "episodes": manifest.summary["episodes"],
                                        "frames": manifest.summary["frames"]})
        await self.websocket.close()

    def _register(self) -> registry.ArtifactInfo:
        return register_recording(self.store, self.workdir / "dataset", self.caller.project, move=True)

    async def _send_error(self, message: str) -> None:
        try:
            await _refuse(self.websocket, message)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the browser left already


class FrameClock:
    """Frames per second over the last second of ticks (what the page shows next to the picture)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def tick(self) -> float:
        now = time.perf_counter()
        self.times = [t for t in self.times if now - t <= 1.0] + [now]
        if len(self.times) < 2:
            return 0.0
        return round((len(self.times) - 1) / (self.times[-1] - self.times[0]), 1)


async def _sleep_until(deadline_s: float) -> float:
    """Sleep until `deadline_s` (perf_counter); a loop that fell behind restarts its schedule from now."""
    now = time.perf_counter()
    if deadline_s > now:
        await asyncio.sleep(deadline_s - now)
        return deadline_s
    await asyncio.sleep(0)  # let the receiver run even when every step overruns
    return now


def _message(text: str) -> dict[str, Any]:
    if len(text) > MAX_MESSAGE_BYTES:
        raise UserError(f"teleop message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(text)
    except ValueError:
        raise UserError("teleop messages are JSON objects with a 'type'") from None
    if not isinstance(message, dict):
        raise UserError("teleop messages are JSON objects with a 'type'")
    return message


def _strings(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 32 or not all(isinstance(v, str) for v in value):
        raise UserError(f"teleop message field {field!r} must be a list of at most 32 key names")
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or abs(value) > 1e6:
        raise UserError(f"teleop message field {field!r} must be a finite number in [-1, 1], got {value!r}")
    return float(value)


def _integer(text: str, field: str) -> int:
    if not text.isdigit() or len(text) > 6:
        raise UserError(f"query parameter {field}={text[:20]!r} must be a whole number of pixels")
    return int(text)
