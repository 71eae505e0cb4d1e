"""The `embodia train` and `embodia export` commands, run through the console entry point with a tiny budget."""

import json
import sys

import pytest

from embodia.cli import main


def _run(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["embodia", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


TINY = ["--set", "num_envs=8", "--set", "num_steps=16", "--set", "num_minibatches=2", "--set", "tensorboard=false",
        "--set", "progress=false"]


def test_train_then_resume_then_export(monkeypatch, tmp_path):
    assert _run(monkeypatch, "train", "--task", "cartpole-balance", "--algo", "ppo", "--total-steps", "256",
                "--seed", "4", "--out", str(tmp_path), *TINY) == 0
    (run,) = list(tmp_path.iterdir())
    assert run.name.startswith("cartpole-balance__ppo__4__")
    assert _run(monkeypatch, "train", "--resume", str(run), "--total-steps", "512") == 0
    state = json.loads((run / "checkpoints" / "final" / "state.json").read_text())
    assert state["global_step"] == 512
    assert _run(monkeypatch, "export", str(run), "--onnx", "--out", str(tmp_path / "export")) == 0
    assert (tmp_path / "export" / "policy.onnx").stat().st_size > 0  # its own output directory, not the run's
    assert not list(run.glob("*.onnx"))


def test_bad_config_field_is_one_red_line_and_exit_code_2(monkeypatch, tmp_path, capsys):
    code = _run(monkeypatch, "train", "--task", "cartpole-balance", "--out", str(tmp_path), "--set", "lerning_rate=0.1")
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown config field 'lerning_rate'" in err and "Traceback" not in err


def test_corrupt_checkpoint_on_export_exits_2_naming_the_file(monkeypatch, tmp_path, capsys):
    assert _run(monkeypatch, "train", "--task", "cartpole-balance", "--total-steps", "128", "--out", str(tmp_path), *TINY) == 0
    (run,) = list(tmp_path.iterdir())
    (run / "checkpoints" / "final" / "model.safetensors").write_bytes(b"\x00" * 10)
    assert _run(monkeypatch, "export", str(run)) == 2
    assert "model.safetensors is corrupt" in capsys.readouterr().err


def test_imitation_algos_route_to_the_dataset_trainer(monkeypatch, tmp_path, capsys):
    assert _run(monkeypatch, "train", "--algo", "bc", "--task", "arm-reach") == 2
    assert "pass --dataset" in capsys.readouterr().err
    missing = tmp_path / "no_such_dataset"
    assert _run(monkeypatch, "train", "--algo", "bc", "--dataset", str(missing), "--out", str(tmp_path)) == 2
    assert "no_such_dataset" in capsys.readouterr().err
    assert _run(monkeypatch, "train", "--algo", "sac", "--dataset", str(missing)) == 2
    assert "--dataset is for imitation learning" in capsys.readouterr().err
