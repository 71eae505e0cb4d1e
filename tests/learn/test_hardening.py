"""Issue 9 for training: untrusted checkpoints, non-finite numbers, dataset validation, --task, default
checkpoints, and metrics that survive crashes and resumes without duplicates."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from embodia.cli import main
from embodia.core.errors import CheckpointError, ConfigError, DatasetFormatError
from embodia.core.reporter import RecordingReporter
from embodia.core.stage import staging_dir
from embodia.learn import train
from embodia.learn.hooks import TrainingDiverged
from embodia.learn.logger import RunLogger
from embodia.learn.trainer import load_config

TINY = {"num_envs": 8, "num_steps": 16, "num_minibatches": 2, "update_epochs": 1, "progress": False}
BC = {"algo": "bc", "num_steps": 10, "hidden_sizes": [8], "batch_size": 16}


def cli(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["embodia", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


def strict_json_lines(path) -> list[dict]:
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


class RunsCode:
    """A pickle payload that creates a file when unpickled: what a hostile optimizer.pt would do."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------------------------------------- item 1
def test_a_pickled_optimizer_file_is_never_unpickled_on_resume(tmp_path):
    run = train.train("cartpole-balance", "ppo", total_steps=256, seed=0, out=tmp_path, overrides=TINY, name="r")
    final = run / "checkpoints" / "final"
    marker = tmp_path / "code-ran"
    (final / "optimizer.pt").write_bytes(pickle.dumps(RunsCode(marker)))
    train.train("", "", resume=run, total_steps=384)  # resumes from optimizer.safetensors; the pickle is ignored
    assert not marker.exists()
    final = run / "checkpoints" / "final"
    (final / "optimizer.pt").write_bytes(pickle.dumps(RunsCode(marker)))
    (final / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"optimizer\.pt .*never loaded"):
        train.train("", "", resume=run, total_steps=512)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- item 6
def test_non_finite_hyperparameters_are_one_line_errors_naming_the_field(monkeypatch, tmp_path, capsys,
                                                                          reach_dataset):
    assert cli(monkeypatch, "train", "--task", "cartpole-balance", "--out", str(tmp_path),
               "--set", "learning_rate=inf") == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "finite" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli(monkeypatch, "train", "--algo", "bc", "--dataset", str(reach_dataset), "--out", str(tmp_path),
               "--set", "learning_rate=nan") == 2
    assert "learning_rate" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing left behind


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverging_run_stops_with_a_clear_error_and_strict_json_metrics(tmp_path):
    config = load_config("cartpole-balance", "ppo", overrides={**TINY, "learning_rate": 1e39, "checkpoint_every": 128},
                         total_steps=1024)
    with pytest.raises(TrainingDiverged, match="not finite.*learning rate"):
        train.run(config, tmp_path / "run")
    staged = staging_dir(tmp_path / "run")
    assert not (staged / "checkpoints" / "final").exists() and not (tmp_path / "run").exists()
    for record in strict_json_lines(staged / "metrics.jsonl"):
        assert all(value is None or np.isfinite(value) for value in record.values())


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    config = load_config("cartpole-balance", "ppo", overrides={**TINY, "checkpoint_every": 128}, total_steps=1024)

    def poison_at_step_384(trainer) -> bool:
        if trainer.global_step == 384:
            trainer.agent.flat[0] = float("nan")
        return False

    with pytest.raises(TrainingDiverged, match=r"last good checkpoint is .*step_000000000256"):
        train.run(config, tmp_path / "run", callback=poison_at_step_384)
    checkpoints = staging_dir(tmp_path / "run") / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step_000000000256"
    assert not (checkpoints / "step_000000000384").exists() and not (checkpoints / "final").exists()
    resumed = train.train("", "", resume=staging_dir(tmp_path / "run"))  # the kept checkpoint resumes
    assert json.loads((resumed / "checkpoints" / "final" / "state.json").read_text())["global_step"] == 1024


# ---------------------------------------------------------------------------------------------- items 9, 11
def test_training_refuses_a_dataset_the_check_refuses(monkeypatch, tmp_path, capsys, make_reach_dataset):
    damaged = make_reach_dataset("damaged")
    info_path = damaged / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"]["observation.state"]["shape"] = [40]  # declared 40 values over 21 stored columns
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetFormatError, match="observation.state"):
        train.run(BC, tmp_path / "run", inputs={"dataset": damaged})
    assert cli(monkeypatch, "train", "--algo", "bc", "--dataset", str(damaged), "--out", str(tmp_path / "runs")) == 2
    err = capsys.readouterr().err
    assert "is not a valid dataset" in err and "observation.state" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_task_is_checked_against_the_dataset_and_recorded(tmp_path, make_reach_dataset):
    no_task = make_reach_dataset("no-task", task=None)
    with pytest.raises(ConfigError, match="cartpole-balance has observations of 5 and actions of 1 values"):
        train.run({**BC, "task": "cartpole-balance"}, tmp_path / "wrong", inputs={"dataset": no_task})
    reporter = RecordingReporter()
    train.run(BC, tmp_path / "none", inputs={"dataset": no_task}, reporter=reporter)
    assert any(kind == "log" and "names no task" in message for kind, message in reporter.events)
    assert json.loads((tmp_path / "none" / "checkpoints" / "final" / "config.json").read_text())["task"] == ""
    train.run({**BC, "task": "arm-reach"}, tmp_path / "given", inputs={"dataset": no_task})
    saved = json.loads((tmp_path / "given" / "checkpoints" / "final" / "config.json").read_text())
    assert saved["task"] == "arm-reach" and saved["policy"]["task"] == "arm-reach"


# ---------------------------------------------------------------------------------------------- item 14
def test_runs_checkpoint_by_default_by_steps_and_by_wall_clock(tmp_path, monkeypatch):
    assert load_config("cartpole-balance", "ppo").checkpoint_every is None  # automatic, not "only the final one"
    monkeypatch.setattr("embodia.learn.trainer.DEFAULT_CHECKPOINT_EVERY", 256)
    run = train.train("cartpole-balance", "ppo", total_steps=512, seed=0, out=tmp_path, overrides=TINY, name="steps")
    assert (run / "checkpoints" / "step_000000000256").is_dir()
    config = load_config("cartpole-balance", "ppo", overrides={**TINY, "checkpoint_every": 0,
                                                                "checkpoint_every_s": 1e-9}, total_steps=1024)
    manifest = train.run(config, tmp_path / "clock", reporter=RecordingReporter(cancel_after=4))
    assert manifest.status == "cancelled"
    autosave = staging_dir(tmp_path / "clock") / "checkpoints" / "autosave"
    assert json.loads((autosave / "state.json").read_text())["global_step"] > 0
    done = train.run(config, tmp_path / "clock")  # a finished run keeps no crash-recovery save
    assert done.status == "complete" and not (tmp_path / "clock" / "checkpoints" / "autosave").exists()


# ---------------------------------------------------------------------------------------------- item 15
def test_metrics_are_flushed_per_line(tmp_path):
    logger = RunLogger(tmp_path, total_steps=10, tensorboard=False)
    logger.log_scalars(3, {"losses/pg_loss": 0.5, "losses/explained_variance": float("nan")})
    assert strict_json_lines(tmp_path / "metrics.jsonl") == [{"step": 3, "losses/pg_loss": 0.5,
                                                              "losses/explained_variance": None}]
    logger.close()


def test_resume_cuts_metrics_and_tensorboard_back_to_the_checkpoint(tmp_path):
    overrides = {**TINY, "checkpoint_every": 256, "tensorboard": True}
    run = train.train("cartpole-balance", "ppo", total_steps=512, seed=0, out=tmp_path, overrides=overrides, name="r")
    crashed = tmp_path / "crashed"
    shutil.copytree(run, crashed)  # as if it crashed after logging step 512, resumed from its step-256 checkpoint
    train.train("", "", resume=crashed / "checkpoints" / "step_000000000256")
    steps = [record["step"] for record in strict_json_lines(crashed / "metrics.jsonl") if "losses/pg_loss" in record]
    assert steps == sorted(set(steps)) and steps[-1] == 512
    events = EventAccumulator(str(crashed / "tb"))
    events.Reload()
    tb_steps = [event.step for event in events.Scalars("losses/pg_loss")]
    assert tb_steps == sorted(set(tb_steps)) and tb_steps[-1] == 512


# ---------------------------------------------------------------------------------------------- item 16 (train)
@pytest.mark.parametrize("flag", ["hidden_sizes=[0,-1]", "env_kwargs.bogus=1", "num_envs=100000000"])
def test_bad_rl_settings_are_one_line_and_leave_nothing_behind(monkeypatch, tmp_path, capsys, flag):
    field = flag.split("=")[0].split("[")[0].split(".")[-1]  # hidden_sizes, bogus, num_envs
    assert cli(monkeypatch, "train", "--task", "cartpole-balance", "--out", str(tmp_path / "runs"), "--set", flag) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_failing_imitation_run_leaves_no_staging_directory(tmp_path, reach_dataset):
    with pytest.raises(ConfigError, match="out of range"):
        train.run({**BC, "state_indices": [0, 99]}, tmp_path / "run", inputs={"dataset": reach_dataset})
    assert not list(tmp_path.iterdir())


def test_gym_task_with_embodia_only_env_kwargs_is_a_user_error():
    from embodia.core.errors import UserError
    from embodia.learn.vec_env import make_train_env

    with pytest.raises(UserError, match="randomization.*not arguments of Gymnasium env 'Hopper-v5'"):
        make_train_env("gym:Hopper-v5", 2, 0, {"randomization": {"body_mass_scale": [0.9, 1.1]}})
