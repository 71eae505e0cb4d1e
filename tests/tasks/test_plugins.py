"""Task plug-ins: one resolver for files, modules, entry points and register_task (with Gymnasium IDs)."""

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

from embodia.tasks import BatchEnv, make_task, register_task, task_names
from embodia.tasks import registry
from embodia.tasks.registry import UnknownTaskError
from .plugin_source import write_plugin


def _steps(task_name: str) -> float:
    env = BatchEnv(task_name, num_envs=2, seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 3)
    total = 0.0
    for _ in range(5):
        obs, reward, *_ = env.step(np.ones((2, 1)))
        total += reward.sum()
    env.close()
    return total


def test_file_route_loads_the_class_and_its_xml_beside_it(tmp_path):
    path = write_plugin(tmp_path)
    task = make_task(f"{path}:Pendulum")
    assert task.registry_name == f"{path}:Pendulum" and task.config.max_episode_steps == 50
    assert np.isfinite(_steps(f"{path}:Pendulum"))
    assert make_task(f"{path}:Pendulum").__class__ is task.__class__  # imported once


def test_module_route(tmp_path, monkeypatch):
    write_plugin(tmp_path, module="plug_module_route")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert np.isfinite(_steps("plug_module_route:Pendulum"))


def test_entry_point_route(tmp_path, monkeypatch):
    write_plugin(tmp_path, module="plug_entry_point")
    info = tmp_path / "plug_entry_point-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-entry-point\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[embodia.tasks]\nplug-pendulum = plug_entry_point:Pendulum\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._entry_points.cache_clear()
    try:
        assert "plug-pendulum" in task_names()
        assert make_task("plug-pendulum").registry_name == "plug-pendulum"
        assert np.isfinite(_steps("plug-pendulum"))
    finally:
        monkeypatch.undo()
        registry._entry_points.cache_clear()


def test_register_task_adds_name_and_gymnasium_ids(tmp_path):
    path = write_plugin(tmp_path)
    cls = make_task(f"{path}:Pendulum").__class__
    register_task("plug-registered", cls, gym_id="PlugTest/Pendulum-v0")
    try:
        assert "plug-registered" in task_names()
        env = gym.make("PlugTest/Pendulum-v0")
        obs, _ = env.reset(seed=0)
        steps, truncated = 0, False
        while not truncated:
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            steps += 1
        assert obs.shape == (3,) and steps == 50  # the task's own episode length
        vec = gym.make_vec("PlugTest/Pendulum-v0", num_envs=3, vectorization_mode="vector_entry_point")
        obs, _ = vec.reset(seed=0)
        assert obs.shape == (3, 3)
        vec.close()
    finally:
        registry._TASKS.pop("plug-registered", None)
        gym.registry.pop("PlugTest/Pendulum-v0", None)


@pytest.mark.parametrize("name, message", [
    ("no_such_module_xyz:Task", "cannot import module 'no_such_module_xyz'"),
    ("missing/file.py:Task", "task file missing/file.py does not exist"),
    ("cheetah-walk", "unknown task 'cheetah-walk'.*cheetah-run.*path/to/file.py:Class"),
])
def test_bad_names_say_what_is_wrong(name, message):
    with pytest.raises(UnknownTaskError, match=message):
        make_task(name)


def test_missing_class_lists_what_the_file_defines(tmp_path):
    path = write_plugin(tmp_path)
    with pytest.raises(UnknownTaskError, match=r"has no 'Pendulm'; it defines \[.*'Pendulum'"):
        make_task(f"{path}:Pendulm")


def test_task_config_errors_name_field_and_list_valid_ones():
    with pytest.raises(ValueError, match=r"unknown field 'frame_skp'; valid fields: .*frame_skip"):
        make_task("cheetah-run", {"frame_skp": 2})


def test_sim_video_cli_takes_a_plugin_task(tmp_path):
    from typer.testing import CliRunner

    from embodia.cli import app

    path = write_plugin(tmp_path)
    out = tmp_path / "plug.mp4"
    result = CliRunner().invoke(app, ["sim", "video", "--task", f"{path}:Pendulum", "--out", str(out), "--steps", "4",
                                      "--width", "32", "--height", "32"])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


def test_import_embodia_is_cheap():
    code = textwrap.dedent("""
        import sys, embodia, gymnasium
        heavy = [m for m in ("mujoco", "torch", "embodia.tasks.base", "embodia.tasks.env") if m in sys.modules]
        print("heavy:", heavy)
        print("registered:", "embodia/CheetahRun-v0" in gymnasium.registry)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "heavy: []" in out and "registered: True" in out


def test_import_embodia_imports_neither_gymnasium_nor_numpy_and_registers_when_gymnasium_comes():
    code = textwrap.dedent("""
        import sys, embodia
        print("loaded:", [m for m in ("gymnasium", "numpy", "pydantic", "mujoco", "yaml") if m in sys.modules])
        import gymnasium
        print("registered:", gymnasium.spec("embodia/ArmReach-v0").kwargs["task"])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "loaded: []" in out and "registered: arm-reach" in out


def test_help_imports_no_numpy_or_pydantic():
    code = textwrap.dedent("""
        import sys
        sys.argv = ["embodia", "--help"]
        import embodia.cli
        try:
            embodia.cli.main()
        except SystemExit:
            pass
        print("loaded:", [m for m in ("numpy", "pydantic", "mujoco", "torch", "gymnasium") if m in sys.modules])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "loaded: []" in out, out[-300:]


def test_task_class_without_building(tmp_path):
    from embodia.tasks.cartpole_swingup import CartpoleSwingup
    from embodia.tasks.gym_task import GymnasiumTask

    path = write_plugin(tmp_path)
    assert registry.task_class(f"{path}:Pendulum").__name__ == "Pendulum"
    assert registry.task_class("cartpole-balance") is CartpoleSwingup
    assert registry.task_class("gym:Hopper-v5") is GymnasiumTask
