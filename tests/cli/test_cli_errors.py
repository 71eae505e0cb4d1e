"""Bad input to any command is one red line on stderr and exit code 2; a bug is a traceback and exit code 3.

Each case here is one that printed a traceback, a misleading message or left files behind (issue 9, item 16).
Commands run in-process through the Typer app, in an empty working directory, so leftovers are seen.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embodia.cli import app, main
from embodia.core.errors import ConfigError, UserError

TINY_PPO = ["--task", "cartpole-balance", "--set", "num_envs=8", "--set", "num_steps=16", "--set", "num_minibatches=2",
            "--set", "tensorboard=false", "--set", "progress=false"]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, so a test can check that a refused command left nothing behind."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr


def assert_one_line_error(code: int, stderr: str, *needles: str) -> str:
    """Exit 2, exactly one non-empty stderr line starting `error:`, no traceback, every needle in that line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def assert_nothing_left(workdir: Path) -> None:
    left = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert left == [], f"the refused command left {left}"


# ------------------------------------------------------------------------------------------- sim

def test_a_huge_batch_is_refused_before_allocating(workdir):
    assert_one_line_error(*run("sim", "bench", "--num-envs", "100000000"), "--num-envs", "65536")
    assert_one_line_error(*run("train", *TINY_PPO, "--set", "num_envs=100000000"), "num_envs", "100000000")
    assert_nothing_left(workdir)


def test_batch_sim_estimates_memory_before_allocating():
    import mujoco

    from embodia.sim.batch import BatchSim, batch_bytes

    model = mujoco.MjModel.from_xml_string('<mujoco><worldbody><body><joint name="hinge"/><geom size=".1"/></body>'
                                           '</worldbody><actuator><motor joint="hinge"/></actuator></mujoco>')
    assert batch_bytes(model, 2_000) == 2 * batch_bytes(model, 1_000) > 0
    with pytest.raises(UserError, match=r"num_envs=1000000000000 needs at least .* GiB"):
        BatchSim(model, 10**12)
    with pytest.raises(UserError, match="nthread=-2"):
        BatchSim(model, 2, nthread=-2)


@pytest.mark.parametrize("args, flag", [
    (["sim", "bench", "--steps", "0"], "--steps"),
    (["sim", "bench", "--nthread", "-2"], "--nthread"),
    (["sim", "video", "--task", "cartpole-swingup", "--out", "v.mp4", "--width", "0"], "--width"),
    (["sim", "video", "--task", "cartpole-swingup", "--out", "v.mp4", "--width", "100000", "--height", "100000"],
     "--width"),
    (["sim", "video", "--task", "cartpole-swingup", "--out", "v.mp4", "--seed", "-1"], "--seed"),
    (["data", "generate", "--task", "arm-reach", "--out", "ds", "--image-size", "-2"], "--image-size"),
    (["data", "generate", "--task", "arm-reach", "--out", "ds", "--episodes", "-1"], "--episodes"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--total-steps", "0"], "--total-steps"),
    (["eval", "compare", "cartpole-swingup", "-a", "random", "-b", "random", "--margin", "nan"], "--margin"),
    (["eval", "compare", "cartpole-swingup", "-a", "random", "-b", "random", "--alpha", "inf"], "--alpha"),
    (["serve", "model.onnx", "--port", "99999"], "--port"),
    (["sim", "bench", "--num-envs", "many"], "--num-envs"),
    (["sim", "bench", "--no-such-option", "1"], "--no-such-option"),
])
def test_out_of_range_or_malformed_options_name_the_flag(workdir, args, flag):
    line = assert_one_line_error(*run(*args), flag)
    assert "libegl1" not in line and "negative dimensions" not in line
    assert_nothing_left(workdir)


def test_non_finite_numbers_are_named_as_such(workdir):
    for flag, value in (("--margin", "nan"), ("--alpha", "-inf")):
        assert_one_line_error(*run("eval", "compare", "cartpole-swingup", "-a", "random", "-b", "random", flag, value),
                              flag, f"{value} is not a finite number")
    assert_nothing_left(workdir)


def test_a_frame_larger_than_the_renderer_supports_is_a_user_error_without_a_gl_hint():
    from embodia.sim.render import MAX_RENDER_SIZE, BatchRenderer
    from embodia.tasks import BatchEnv

    env = BatchEnv("cartpole-swingup", num_envs=1)
    try:
        with pytest.raises(UserError, match=rf"100000x100000.*\[1, {MAX_RENDER_SIZE}\]") as refused:
            BatchRenderer(env.sim, width=100_000, height=100_000)
        assert "libegl1" not in str(refused.value)
    finally:
        env.close()


# ------------------------------------------------------------------------------------------- data

def test_data_show_refuses_a_port_out_of_range_and_negative_max_episodes(workdir):
    dataset = workdir.parent / "ds"
    dataset.mkdir()
    assert_one_line_error(*run("data", "show", str(dataset), "--serve", "--port", "99999"), "--port")
    assert_one_line_error(*run("data", "show", str(dataset), "--max-episodes", "-1"), "--max-episodes")
    assert_nothing_left(workdir)


def test_data_augment_num_zero_is_one_line_naming_the_flag(workdir):
    source = workdir.parent / "demos"
    source.mkdir()
    assert_one_line_error(*run("data", "augment", str(source), "--out", "aug", "--num", "0"), "--num")
    assert_nothing_left(workdir)


def test_generate_with_an_unknown_camera_writes_nothing(workdir):
    assert_one_line_error(*run("data", "generate", "--task", "arm-reach", "--cameras", "top", "--out", "ds"),
                          "--cameras", "'top'")
    assert_nothing_left(workdir)


def test_missing_path_and_file_for_directory_are_named_accurately(workdir):
    (workdir.parent / "afile").write_text("x")
    missing = assert_one_line_error(*run("data", "check", str(workdir.parent / "absent")), "absent")
    assert "does not exist" in missing
    a_file = assert_one_line_error(*run("data", "check", str(workdir.parent / "afile")), "afile")
    assert "is a file" in a_file and "does not exist" not in a_file


# ------------------------------------------------------------------------------------------- train

@pytest.mark.parametrize("override, needle", [
    ("hidden_sizes=[0,-1]", "hidden_sizes[1]"),
    ("env_kwargs.bogus=1", "'bogus'"),
    ("learning_rate=nan", "learning_rate"),
])
def test_bad_training_overrides_are_one_line_and_leave_no_run_directory(workdir, override, needle):
    line = assert_one_line_error(*run("train", *TINY_PPO, "--set", override), needle)
    assert "negative dimension" not in line
    assert_nothing_left(workdir)


def test_a_setting_refused_inside_the_run_leaves_no_empty_run_directory(workdir):
    assert_one_line_error(*run("train", *TINY_PPO, "--set", "env_kwargs.nthread=-2"), "nthread=-2")
    assert_nothing_left(workdir)


def test_imitation_set_overrides_are_one_line_naming_the_field(workdir):
    dataset = workdir.parent / "demos"
    dataset.mkdir()
    assert_one_line_error(*run("train", "--algo", "bc", "--dataset", str(dataset), "--set", "batch_size=0"),
                          "batch_size")
    assert_one_line_error(*run("train", "--algo", "diffusion", "--dataset", str(dataset), "--set", "horizon=abc"),
                          "horizon")
    assert_nothing_left(workdir)


def test_config_file_that_is_not_utf8_names_the_file(workdir):
    config = workdir.parent / "binary.yaml"
    config.write_bytes(b"\xff\xfe\x00garbage")
    assert_one_line_error(*run("train", "--config", str(config)), "binary.yaml", "UTF-8")


def test_dataset_metadata_that_is_not_utf8_names_the_file(workdir):
    dataset = workdir.parent / "ds"
    (dataset / "meta").mkdir(parents=True)
    (dataset / "meta" / "info.json").write_bytes(b"\xff\xfe{}")
    assert_one_line_error(*run("data", "show", str(dataset), "--out", str(workdir.parent / "page.html")),
                          "info.json", "UTF-8")
    assert_nothing_left(workdir)


def test_resuming_a_checkpoint_with_a_wrong_shaped_tensor_names_the_tensor(tmp_path, monkeypatch):
    import safetensors.torch
    import torch

    monkeypatch.chdir(tmp_path)
    assert run("train", *TINY_PPO, "--total-steps", "128", "--out", "runs")[0] == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    weights = run_dir / "checkpoints" / "final" / "model.safetensors"
    tensors = safetensors.torch.load_file(weights)
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 3)
    safetensors.torch.save_file(tensors, weights)
    line = assert_one_line_error(*run("train", "--resume", str(run_dir), "--total-steps", "256"), name, "size mismatch")
    assert ".partial" not in line and str(run_dir.relative_to(tmp_path)) in line


# ------------------------------------------------------------------------------------------- eval

def test_unreachable_policy_server_is_one_line(workdir):
    line = assert_one_line_error(*run("eval", "run", "cartpole-swingup", "--policy", "http://127.0.0.1:1",
                                      "--episodes", "1", "--no-videos", "--out", "ev"), "127.0.0.1:1")
    assert "no policy server answered" in line
    assert_nothing_left(workdir)


def test_compare_refuses_a_bad_candidate_before_running_the_baseline(workdir):
    code, stderr = run("eval", "compare", "cartpole-swingup", "-a", "random", "-b", "no-such-policy", "-o", "cmp")
    assert "evaluate" not in stderr  # no progress of a baseline run before the refusal
    assert_one_line_error(code, stderr, "no-such-policy")
    assert_nothing_left(workdir)


def test_eval_out_that_is_an_existing_file_is_refused(workdir):
    (workdir.parent / "taken").write_text("x")
    assert_one_line_error(*run("eval", "run", "cartpole-swingup", "--policy", "random",
                               "--out", str(workdir.parent / "taken")), "--out", "taken")


def test_eval_validate_refuses_a_video_camera_the_task_lacks(workdir):
    from embodia.evaluate.suite import builtin_suites

    text = builtin_suites()["cartpole-swingup"].read_text().replace("camera: fixed", "camera: no_such_camera")
    suite = workdir.parent / "suite.yaml"
    suite.write_text(text)
    assert_one_line_error(*run("eval", "validate", str(suite)), "video.camera", "no_such_camera", "fixed")
    assert_one_line_error(*run("eval", "run", str(suite), "--policy", "random", "--episodes", "1", "--out", "ev"),
                          "video.camera")
    assert_nothing_left(workdir)


def test_suite_task_config_errors_are_one_line_naming_the_field(workdir):
    suite = workdir.parent / "suite.yaml"
    suite.write_text("name: s\ntask: cartpole-swingup\ntask_config: {max_episode_steps: -5}\nscenarios:\n  - name: a\n")
    assert_one_line_error(*run("eval", "validate", str(suite)), "max_episode_steps", "-5")


def test_job_config_that_is_not_json_is_one_line(workdir):
    assert_one_line_error(*run("jobs", "submit", "sleep", "--config", "{not json"), "--config", "JSON")
    assert_one_line_error(*run("jobs", "submit", "sleep", "--input", "no-equals-sign"), "--input")
    assert_nothing_left(workdir)


# ------------------------------------------------------------------------------------------- shared pieces

def test_os_errors_name_the_target_never_the_temporary_file(tmp_path):
    from embodia.core.atomic import atomic_write_bytes

    target = tmp_path / "out.json"
    target.mkdir()  # renaming the temporary file onto a directory fails
    with pytest.raises(OSError) as failed:
        atomic_write_bytes(target, b"{}")
    assert failed.value.filename == str(target) and ".tmp" not in str(failed.value)
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left behind


def test_writing_under_a_file_is_one_line_naming_the_path(workdir):
    (workdir / "afile").write_text("x")
    assert_one_line_error(*run("sim", "video", "--task", "cartpole-swingup", "--out", "afile/v.mp4", "--steps", "1"),
                          "afile")
    assert sorted(p.name for p in workdir.iterdir()) == ["afile"]


def test_config_error_is_one_line_naming_each_field_and_the_allowed_range():
    from pydantic import BaseModel, Field

    from embodia.core.config import validate_config

    class Example(BaseModel):
        num: int = Field(1, ge=1, le=10)
        rate: float = Field(0.5, gt=0)

    with pytest.raises(ConfigError) as refused:
        validate_config(Example, {"num": 0, "rate": -1}, flags=True)
    message = str(refused.value)
    assert "\n" not in message
    assert "--num = 0" in message and "greater than or equal to 1" in message and "--rate = -1" in message


def test_paths_checks_say_missing_file_or_directory(tmp_path):
    from embodia.core.paths import require_dir, require_file

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="does not exist"):
        require_dir(tmp_path / "nope")
    with pytest.raises(UserError, match="is a file, not a directory"):
        require_dir(tmp_path / "f")
    with pytest.raises(UserError, match="is a directory, not a file"):
        require_file(tmp_path)


def test_an_internal_error_shows_the_traceback_says_it_is_a_bug_and_exits_3(monkeypatch, capsys):
    import embodia.sim.assets

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(embodia.sim.assets, "load_model", broken)
    monkeypatch.setattr(sys, "argv", ["embodia", "sim", "inspect", "cartpole_swingup.xml"])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 3
    assert "Traceback" in err and "RuntimeError: boom" in err and "internal error" in err and "bug" in err
