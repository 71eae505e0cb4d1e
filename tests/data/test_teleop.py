"""Teleoperation session core: commands move the grip point where asked, keys map through the camera's view,
episodes are recorded into a dataset that `embodia data check` accepts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from embodia.core.errors import ConfigError, UserError
from embodia.data.check import check_dataset
from embodia.data.teleop import (
    ScriptedKeys,
    TeleopCommand,
    TeleopControls,
    TeleopSession,
    command_to_action,
    drive_with_keys,
    normalize_key,
    teleop_task_names,
    view_axes,
)
from embodia.data.writer import OutputExistsError


@pytest.fixture()
def session(tmp_path):
    session = TeleopSession({"task": "arm-pick-place", "image_size": 64, "physics_randomization": False},
                            tmp_path / "demo")
    yield session
    session.close()


def _drive(session: TeleopSession, velocity, steps: int, closed: bool = False) -> np.ndarray:
    start = np.array(session.status().ee_m)
    for _ in range(steps):
        session.step(TeleopCommand(np.array(velocity, dtype=float), closed))
    return np.array(session.status().ee_m) - start


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_commanded_velocity_moves_the_grip_point_along_that_axis(session, axis):
    velocity = np.zeros(3)
    velocity[axis] = -1.0 if axis == 2 else 1.0  # down, since the home pose is near the top of the workspace
    moved = _drive(session, velocity, 6)
    assert moved[axis] * velocity[axis] > 0.05  # 6 steps at up to 3 cm each
    others = np.delete(moved, axis)
    assert np.all(np.abs(others) < 0.4 * abs(moved[axis]))


def test_gripper_command_closes_and_opens_the_fingers(session):
    open_m = session.status().gripper_opening_m
    for _ in range(8):
        status = session.step(TeleopCommand(np.zeros(3), True))
    assert status.gripper_closed and status.gripper_opening_m < 0.5 * open_m
    for _ in range(8):
        status = session.step(TeleopCommand(np.zeros(3), False))
    assert not status.gripper_closed and status.gripper_opening_m > 0.9 * open_m


def test_keys_move_in_the_cameras_view_frame(session):
    controls = TeleopControls(session.view_to_world)
    controls.set_held(["w"])
    forward = controls.command().ee_velocity
    moved = _drive(session, forward, 5)
    flat_view = session.view_to_world[:, 0]
    assert flat_view[2] == 0.0 and np.dot(moved[:2], flat_view[:2]) > 0.05  # away from the camera on the table
    controls.set_held(["d", "q"])
    right_up = controls.command().ee_velocity
    assert np.allclose(right_up[:2], session.view_to_world[:2, 1]) and right_up[2] == 1.0


def test_view_axes_of_a_camera_looking_straight_down_use_its_image_up():
    down = np.diag([1.0, 1.0, 1.0])  # camera -z = world -z: looking down, image up = world +y
    axes = view_axes(down)
    assert np.allclose(axes[:, 0], [0, 1, 0]) and np.allclose(axes[:, 2], [0, 0, 1])
    assert np.allclose(axes[:, 1], np.cross(axes[:, 0], axes[:, 2]))


def test_controls_space_toggles_the_gripper_and_enter_backspace_are_events():
    controls = TeleopControls(np.eye(3))
    assert controls.press(" ") is None and controls.command().gripper_closed
    assert controls.press("Spacebar") is None and not controls.command().gripper_closed
    assert controls.press("Enter") == "end" and controls.press("Backspace") == "discard"
    controls.set_held(["w", "s", "unknown-key"])  # opposite keys cancel, unknown keys are ignored
    assert np.allclose(controls.command().ee_velocity, 0.0)
    controls.set_axes(float("nan"), 3.0, -0.5)
    assert np.allclose(controls.view_motion(), [0.0, 1.0, -0.5])
    assert normalize_key("ArrowUp") == "arrowup" and normalize_key("Return") == "enter"


def test_command_to_action_is_the_tasks_cartesian_action_and_refuses_nan():
    action = command_to_action(TeleopCommand(np.array([2.0, -0.5, 0.0]), True))
    assert np.allclose(action, [1.0, -0.5, 0.0, -1.0])
    with pytest.raises(UserError, match="finite"):
        command_to_action(TeleopCommand(np.array([np.nan, 0.0, 0.0])))


def test_scripted_keys_record_a_dataset_that_passes_check(tmp_path):
    out = tmp_path / "human"
    session = TeleopSession({"task": "arm-pick-place", "image_size": 64, "operator": "ada", "project": "lab"}, out)
    script = [["w"]] * 4 + [[" "]] + [["e"]] * 3 + [["enter"]] + [["a"], ["backspace"]] + [["d"]] * 2 + [["enter"]]
    kept = drive_with_keys(session, ScriptedKeys(script), episodes=2, realtime=False)
    assert kept == 2
    manifest = session.save()
    report = check_dataset(out)
    assert report.ok, report.problems
    info = json.loads((out / "meta" / "info.json").read_text())
    # a Space press still steps (with the gripper toggled); Enter and Backspace do not; the discarded step is gone
    assert info["total_episodes"] == 2 and info["total_frames"] == (4 + 1 + 3) + 2
    frames = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    grip = [action[3] for action in frames["action"]]
    assert grip == [1.0] * 4 + [-1.0] * 4 + [1.0] * 2  # closed after Space, open again in the next episode
    assert info["features"]["observation.images.front"]["shape"][:2] == [64, 64]
    assert info["embodia"]["task"] == "arm-pick-place" and info["embodia"]["teleop"]["source"] == "human"
    assert manifest.stage == "teleop" and manifest.kind == "dataset"
    assert manifest.config["operator"] == "ada" and manifest.config["project"] == "lab"
    assert manifest.summary["episodes"] == 2


def test_saving_with_no_kept_episode_is_a_clear_error(session):
    session.step(TeleopCommand(np.zeros(3)))
    with pytest.raises(UserError, match="no episode recorded"):
        session.save()


def test_a_task_without_a_gripper_or_an_unknown_camera_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="cannot be teleoperated"):
        TeleopSession({"task": "arm-reach"}, tmp_path / "a")
    with pytest.raises(ConfigError, match="not a camera"):
        TeleopSession({"task": "arm-push", "camera": "ceiling"}, tmp_path / "b")
    with pytest.raises(ConfigError, match="image_size"):
        TeleopSession({"image_size": 65}, tmp_path / "c")
    assert "arm-pick-place" in teleop_task_names() and "arm-reach" not in teleop_task_names()


def test_a_non_empty_output_directory_is_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not empty"):
        TeleopSession({}, tmp_path / "busy")
