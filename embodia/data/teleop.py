"""Human teleoperation of an arm task: end-effector velocity and gripper commands in, the rendered camera out,
and every episode recorded into a LeRobot dataset in the same format as `embodia data generate` writes.

The browser console and `embodia teleop` both drive a `TeleopSession` through `TeleopControls`, so a key means
the same motion everywhere: W/S and the up/down arrows move the gripper away from / towards the camera, A/D and
left/right move it left / right in the picture, Q/E up / down; Space opens or closes the gripper; Enter ends the
episode and starts the next; Backspace throws the current episode away.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embodia.core.config import validate_config
from embodia.core.errors import ConfigError, UserError
from embodia.core.manifest import Manifest
from embodia.core.stage import StageResult, run_stage, staging_dir
from embodia.data.generate import (
    EpisodeRecorder,
    env_dataset_spec,
    episode_seed,
    even_image_size,
    task_description,
)
from embodia.data.video import VideoConfig
from embodia.data.writer import OutputExistsError, StagingArea

log = logging.getLogger("embodia.teleop")

# key name (KeyboardEvent.key, lower case) -> motion in the camera's view frame (forward, right, up)
MOTION_KEYS: dict[str, tuple[float, float, float]] = {
    "w": (1.0, 0.0, 0.0), "s": (-1.0, 0.0, 0.0), "d": (0.0, 1.0, 0.0), "a": (0.0, -1.0, 0.0),
    "q": (0.0, 0.0, 1.0), "e": (0.0, 0.0, -1.0),
    "arrowup": (1.0, 0.0, 0.0), "arrowdown": (-1.0, 0.0, 0.0), "arrowright": (0.0, 1.0, 0.0), "arrowleft": (0.0, -1.0, 0.0),
}
GRIPPER_KEY = " "
END_EPISODE_KEY = "enter"
DISCARD_KEY = "backspace"
KEY_HELP = (("W / S or up / down", "move away from / towards the camera"), ("A / D or left / right", "move left / right"),
            ("Q / E", "move up / down"), ("Space", "open / close the gripper"),
            ("Enter", "end the episode (kept) and start the next"), ("Backspace", "discard the episode and restart"))


class TeleopConfig(BaseModel):
    """One teleoperation recording: the task, the camera the operator sees (and the dataset records), who drives."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str = Field("arm-pick-place", description="an arm task with a gripper: arm-pick-place or arm-push")
    camera: str = Field("front", description="the task camera streamed to the operator and recorded")
    image_size: int = Field(256, ge=64, le=640, description="square camera image size in pixels (even)")
    seed: int = Field(0, ge=0, le=2**62, description="episode k starts from episode seed episode_seed(seed, k)")
    max_episode_s: float = Field(60.0, gt=0.0, le=3600.0, description="an episode is cut (truncated) after this long (sim s)")
    physics_randomization: bool = Field(True, description="the task's default physics randomization, as in generate")
    jpeg_quality: int = Field(80, ge=10, le=95, description="JPEG quality of the streamed frames")
    operator: str = Field("", max_length=200, description="who drives (recorded in the dataset's manifest)")
    project: str = Field("", max_length=100, description="the platform project the recording belongs to")
    video: VideoConfig = Field(default_factory=VideoConfig, description="camera stream encoding in the dataset")

    _even = field_validator("image_size")(even_image_size)


@dataclass(frozen=True)
class TeleopCommand:
    """What the operator asks for one control step: grip-point velocity in world axes, each in [-1, 1] (times the
    task's `action_scale_m` per step), and whether the gripper is closed."""

    ee_velocity: np.ndarray  # (3,) world x, y, z
    gripper_closed: bool = False


class TeleopControls:
    """Held keys, gamepad axes and the gripper toggle of one operator, turned into `TeleopCommand`s.

    `view_to_world` (3, 3) has the world directions of the view frame's forward, right and up in its columns.
    """

    def __init__(self, view_to_world: np.ndarray) -> None:
        self.view_to_world = np.asarray(view_to_world, dtype=np.float64)
        self.held: set[str] = set()
        self.axes = np.zeros(3)  # (forward, right, up) from a gamepad, each in [-1, 1]
        self.gripper_closed = False

    def set_held(self, keys: Iterable[str]) -> None:
        """The keys held down now (browser key state); unknown keys are ignored."""
        self.held = {normalize_key(k) for k in keys} & set(MOTION_KEYS)

    def set_axes(self, forward: float, right: float, up: float) -> None:
        """Gamepad stick values in the view frame; non-finite values count as 0, others are clipped to [-1, 1]."""
        values = np.array([forward, right, up], dtype=np.float64)
        self.axes = np.clip(np.where(np.isfinite(values), values, 0.0), -1.0, 1.0)

    def press(self, key: str) -> str | None:
        """A discrete key press: toggles the gripper, or returns 'end' / 'discard' for the session to act on."""
        key = normalize_key(key)
        if key == GRIPPER_KEY:
            self.gripper_closed = not self.gripper_closed
        return {END_EPISODE_KEY: "end", DISCARD_KEY: "discard"}.get(key)

    def view_motion(self) -> np.ndarray:
        """(forward, right, up) in [-1, 1]: held keys plus gamepad axes."""
        motion = self.axes.copy()
        for key in self.held:
            motion += MOTION_KEYS[key]
        return np.clip(motion, -1.0, 1.0)

    def new_episode(self) -> None:
        """A new episode starts with the gripper open and nothing held."""
        self.gripper_closed = False
        self.held = set()

    def command(self) -> TeleopCommand:
        """This step's command in world axes."""
        world = self.view_to_world @ self.view_motion()
        return TeleopCommand(np.clip(world, -1.0, 1.0), self.gripper_closed)


def normalize_key(key: str) -> str:
    """KeyboardEvent.key / terminal names to one spelling: lower case, 'Enter', 'Spacebar' and 'Return' unified."""
    key = str(key)[:20]
    if key == " ":
        return key
    key = key.strip().lower()
    return {"return": "enter", "spacebar": " ", "space": " ", "up": "arrowup", "down": "arrowdown",
            "left": "arrowleft", "right": "arrowright"}.get(key, key)


def view_axes(camera_rotation: np.ndarray) -> np.ndarray:
    """(3, 3) columns: world forward (the camera's view direction flattened onto the table), right, and up (+z).

    A camera looking straight down uses its image 'up' as forward instead of the vanishing flat view direction.
    """
    rotation = np.asarray(camera_rotation, dtype=np.float64).reshape(3, 3)
    looking = -rotation[:, 2]  # MuJoCo cameras look along their -z axis
    forward = np.array([looking[0], looking[1], 0.0])
    if np.linalg.norm(forward) < 0.2:
        forward = np.array([rotation[0, 1], rotation[1, 1], 0.0])
    forward /= np.linalg.norm(forward)
    up = np.array([0.0, 0.0, 1.0])
    right = np.cross(forward, up)
    return np.stack([forward, right, up], axis=1)


@dataclass(frozen=True)
class TeleopStatus:
    """What the operator sees besides the picture, after one step."""

    episode: int  # index of the episode being recorded now (0-based)
    kept: int  # episodes kept so far
    step: int
    time_s: float
    ee_m: tuple[float, float, float]
    gripper_closed: bool
    gripper_opening_m: float
    reward: float
    episode_return: float
    success: bool
    ended: str | None = None  # why the previous episode ended in this step: end, discard, terminated, time_limit

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the browser's status message)."""
        return {"episode": self.episode, "kept": self.kept, "step": self.step, "time_s": round(self.time_s, 3),
                "ee_m": [round(v, 4) for v in self.ee_m], "gripper": "closed" if self.gripper_closed else "open",
                "gripper_opening_m": round(self.gripper_opening_m, 4), "reward": round(self.reward, 4),
                "return": round(self.episode_return, 4), "success": self.success, "ended": self.ended}

    def line(self) -> str:
        """One terminal status line."""
        x, y, z = self.ee_m
        return (f"episode {self.episode + 1} (kept {self.kept})  t {self.time_s:5.1f} s  ee ({x:+.3f}, {y:+.3f}, "
                f"{z:+.3f}) m  gripper {'closed' if self.gripper_closed else 'open  '}  reward {self.reward:+.3f}  "
                f"success {'yes' if self.success else 'no '}")


def teleop_task_names() -> list[str]:
    """Registered tasks a human can drive here: the arm tasks with a gripper."""
    from embodia.tasks.arm_common import ArmTask
    from embodia.tasks.registry import make_task, task_names

    names = []
    for name in task_names():
        try:
            task = make_task(name)
        except (UserError, ValueError, ImportError) as error:  # a plugin task that fails to build is not offered
            log.warning("task %s is not offered for teleoperation: %s", name, error)
            continue
        if isinstance(task, ArmTask) and task.uses_gripper:
            names.append(name)
    return sorted(names)


class TeleopSession:
    """One env of an arm task driven by `TeleopCommand`s at its control rate, rendering one camera, recording
    each episode (state, action, reward, done, success, camera frames) into a dataset staged beside `out`.

    Episodes are staged whole as they finish (crash-safe); `save()` lays out the LeRobot dataset at `out` with a
    manifest (stage 'teleop', source 'human', operator, project). Not thread-safe: drive it from one thread (the
    GL context of its renderer belongs to the thread that made it).
    """

    def __init__(self, config: TeleopConfig | dict, out: str | Path) -> None:
        self.config = config if isinstance(config, TeleopConfig) else validate_config(TeleopConfig, config)
        self.out = Path(out)
        self._check_out()
        self.env = _make_env(self.config)
        self.renderer = None
        try:
            self.renderer = _make_renderer(self.env, self.config)
            self.view_to_world = view_axes(_camera_rotation(self.env, self.config.camera))
            self.spec = env_dataset_spec(self.env, self.config.task, {self.config.camera: (self.config.image_size,) * 2},
                                         self.config.video, {"task": self.config.task, "teleop": self._settings()})
            self.staging = StagingArea.create(staging_dir(self.out), self.spec)
        except BaseException:
            if self.renderer is not None:
                self.renderer.close()
            self.env.close()
            raise
        self.recorder = EpisodeRecorder(1, [self.config.camera])
        self.description = task_description(self.config.task)
        self.kept_keys: list[int] = []
        self.successes = 0
        # episodes are encoded and staged on their own thread, so ending one does not stall the picture
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="teleop-writer")
        self.writes: list[Future] = []
        self.attempt = 0
        self.saved: Manifest | None = None
        self._closed = False
        self._start_episode()

    # ------------------------------------------------------------------ setup
    def _check_out(self) -> None:
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise OutputExistsError(f"--out {self.out} exists and is not empty; choose a new directory")
        if staging_dir(self.out).exists():
            raise OutputExistsError(f"{staging_dir(self.out)} holds an unfinished recording; delete it or choose a "
                                    "new --out directory")

    def _settings(self) -> dict[str, Any]:
        return {**self.config.model_dump(mode="json", exclude={"video", "jpeg_quality"}), "source": "human"}

    # ------------------------------------------------------------------ episodes
    def _start_episode(self) -> None:
        seed = episode_seed(self.config.seed, self.attempt)
        obs, _ = self.env.reset(options={"episode_seeds": np.array([seed], dtype=np.int64)})
        self.obs = obs
        self.frame = self._render()
        self.ever_success = False
        self.last_reward = 0.0
        self.last_success = False
        self.gripper_closed = False

    def _render(self) -> np.ndarray:
        return self.renderer.render(np.array([0]), camera=self.config.camera)[0]  # (H, W, 3) uint8

    @property
    def steps(self) -> int:
        """Control steps recorded in the current episode."""
        return int(self.env.episode_step[0])

    def step(self, command: TeleopCommand) -> TeleopStatus:
        """Apply one command for one control step, record it, render the new picture; an episode that ends
        (the cube fell, the time limit) is kept and the next one starts."""
        self._check_open()
        action = command_to_action(command)
        next_obs, reward, terminated, truncated, info = self.env.step(action[None])
        success = bool(info["success"][0])
        self.ever_success |= success
        done = bool(terminated[0] or truncated[0])
        self.recorder.record(np.array([0]), self.obs, action[None], reward, np.array([done]), np.array([success]),
                             {self.config.camera: self.frame[None]})
        self.last_reward, self.last_success = float(reward[0]), success
        self.gripper_closed = command.gripper_closed
        self.obs = next_obs
        if done:
            return self._finish("terminated" if terminated[0] else "time_limit", keep=True)
        self.frame = self._render()
        return self.status()

    def end_episode(self, keep: bool = True) -> TeleopStatus:
        """End the current episode now (kept unless `keep` is False or it has no step) and start the next."""
        self._check_open()
        return self._finish("end" if keep else "discard", keep=keep)

    def _finish(self, reason: str, keep: bool) -> TeleopStatus:
        if keep and self.steps > 0:
            episode = self.recorder.pop(0, self.description, self._episode_info(reason))
            self.writes.append(self.writer.submit(self.staging.write_episode, self.attempt, episode))
            self.kept_keys.append(self.attempt)
            self.successes += int(self.ever_success)
        elif self.steps > 0:
            self.recorder.pop(0, self.description, {})  # thrown away
        self.attempt += 1
        self._start_episode()
        return self.status(ended=reason)

    def _episode_info(self, reason: str) -> dict[str, Any]:
        return {"episode_seed": int(self.env.episode_seed[0]), "success": bool(self.ever_success),
                "final_success": bool(self.last_success), "attempt": self.attempt,
                "return": float(self.env.episode_return[0]), "ended": reason}

    def status(self, ended: str | None = None) -> TeleopStatus:
        """The operator's view of the current state."""
        task, sim = self.env.task, self.env.sim
        return TeleopStatus(episode=len(self.kept_keys), kept=len(self.kept_keys), step=self.steps,
                            time_s=self.steps * sim.dt, ee_m=tuple(float(v) for v in task.ee_pos(sim)[0]),
                            gripper_closed=self.gripper_closed,
                            gripper_opening_m=float(task.gripper_opening(sim)[0]), reward=self.last_reward,
                            episode_return=float(self.env.episode_return[0]), success=self.last_success, ended=ended)

    # ------------------------------------------------------------------ output
    def jpeg(self) -> bytes:
        """The current picture as JPEG bytes (what the browser shows)."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(self.frame).save(buffer, format="JPEG", quality=self.config.jpeg_quality)
        return buffer.getvalue()

    def save(self) -> Manifest:
        """Write the kept episodes as a LeRobot dataset at `out` (with manifest.json) and close the session."""
        self._check_open()
        if not self.kept_keys:
            raise UserError("no episode recorded yet: drive the arm and press Enter to keep an episode before saving")
        keys = list(self.kept_keys)
        for write in self.writes:
            write.result()  # an episode that failed to stage raises here
        summary = {"episodes": len(keys), "successes": self.successes,
                   "frames": sum(self.staging.read_episode_meta(k)["length"] for k in keys)}

        def body(stage_dir: Path, _reporter) -> StageResult:
            StagingArea(stage_dir).finalize(keys)
            return StageResult(seeds=[self.config.seed], summary=summary)

        self.saved = run_stage("teleop", "dataset", self._settings(), self.out, body, resume=True, overwrite=False)
        self.close()
        return self.saved

    def close(self) -> None:
        """Free the renderer and the env; an unsaved recording's staged episodes are deleted."""
        if self._closed:
            return
        self._closed = True
        self.writer.shutdown(wait=True)
        self.renderer.close()
        self.env.close()
        if self.saved is None:
            import shutil

            shutil.rmtree(staging_dir(self.out), ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise UserError("this teleoperation session is closed (saved or stopped); start a new one")


def command_to_action(command: TeleopCommand) -> np.ndarray:
    """The arm tasks' action (4,): grip-point delta [dx, dy, dz] in [-1, 1] and gripper (-1 closed, +1 open)."""
    velocity = np.asarray(command.ee_velocity, dtype=np.float64).reshape(3)
    if not np.isfinite(velocity).all():
        raise UserError(f"teleop command ee_velocity={velocity.tolist()} must be finite numbers in [-1, 1]")
    gripper = -1.0 if command.gripper_closed else 1.0
    return np.concatenate([np.clip(velocity, -1.0, 1.0), [gripper]])


def _make_env(config: TeleopConfig):
    from embodia.tasks import BatchEnv
    from embodia.tasks.arm_common import ArmTask, default_randomization
    from embodia.tasks.registry import make_task

    task = make_task(config.task)
    if not (isinstance(task, ArmTask) and task.uses_gripper):
        raise ConfigError(f"task {config.task!r} cannot be teleoperated: pick an arm task with a gripper "
                          f"({', '.join(teleop_task_names())})")
    randomization = default_randomization(config.task) if config.physics_randomization else None
    env = BatchEnv(task, 1, seed=config.seed, randomization=randomization, autoreset_mode="disabled", nthread=1)
    env.max_episode_steps = max(1, round(config.max_episode_s / env.sim.dt))
    return env


def _make_renderer(env, config: TeleopConfig):
    from embodia.sim.render import BatchRenderer

    names = [env.model.camera(i).name for i in range(env.model.ncam)]
    if config.camera not in names:
        raise ConfigError(f"camera {config.camera!r} is not a camera of task {config.task!r}; it has {names}")
    return BatchRenderer(env.sim, width=config.image_size, height=config.image_size, multisample=0)


def _camera_rotation(env, camera: str) -> np.ndarray:
    """The camera's world rotation (3, 3) in the env's reset state."""
    import mujoco

    data = mujoco.MjData(env.model)
    model = env.sim.load_data(0, data)
    mujoco.mj_forward(model, data)
    return data.cam(camera).xmat.reshape(3, 3).copy()


# ---------------------------------------------------------------------- a keyboard loop (the terminal's)
class KeySource(Protocol):
    """Keys pressed since the last call; None when the operator has quit (or a script has run out)."""

    def poll(self) -> list[str] | None: ...


class ScriptedKeys:
    """A key source for tests and demos: one list of keys per control step, then None."""

    def __init__(self, steps: Iterable[Iterable[str]]) -> None:
        self.steps = [list(keys) for keys in steps]
        self.index = 0

    def poll(self) -> list[str] | None:
        if self.index >= len(self.steps):
            return None
        self.index += 1
        return self.steps[self.index - 1]


QUIT_KEYS = ("escape", "ctrl-c")


def drive_with_keys(session: TeleopSession, keys: KeySource, *, episodes: int, hold_steps: int = 3,
                    realtime: bool = True, on_status: Callable[[TeleopStatus], None] | None = None) -> int:
    """Drive `session` from key presses until `episodes` are kept or the operator quits; returns episodes kept.

    A terminal reports presses, not releases: a motion key moves the gripper for `hold_steps` control steps
    (its auto-repeat renews that). With `realtime` the loop keeps the task's control rate.
    """
    controls = TeleopControls(session.view_to_world)
    held_until: dict[str, int] = {}
    tick = 0
    period_s = session.env.sim.dt
    next_s = time.perf_counter()
    while len(session.kept_keys) < episodes:
        pressed = keys.poll()
        if pressed is None or any(normalize_key(k) in QUIT_KEYS for k in pressed):
            break
        event = None
        for key in pressed:
            key = normalize_key(key)
            if key in MOTION_KEYS:
                held_until[key] = tick + hold_steps
            event = controls.press(key) or event
        controls.set_held(k for k, until in held_until.items() if until > tick)
        status = session.end_episode(keep=event == "end") if event else session.step(controls.command())
        if status.ended:
            controls.new_episode()
            held_until.clear()
        if on_status is not None:
            on_status(status)
        tick += 1
        if realtime:
            next_s = _wait_until(next_s + period_s)
    return len(session.kept_keys)


def _wait_until(deadline_s: float) -> float:
    """Sleep until `deadline_s` (perf_counter); a loop that fell behind restarts its schedule from now."""
    now = time.perf_counter()
    if deadline_s > now:
        time.sleep(deadline_s - now)
        return deadline_s
    return now


__all__ = ["KEY_HELP", "MOTION_KEYS", "ScriptedKeys", "TeleopCommand", "TeleopConfig", "TeleopControls",
           "TeleopSession", "TeleopStatus", "command_to_action", "drive_with_keys", "normalize_key",
           "teleop_task_names", "view_axes"]
