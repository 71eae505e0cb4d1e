"""`embodia serve`: bad model files give one red error line, a good one serves until stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from embodia.cli import main


def _run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["embodia", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def test_missing_model_is_one_clear_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    code, err = _run_cli(["serve", str(tmp_path / "absent.onnx"), "--port", "0"], monkeypatch, capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "absent.onnx does not exist" in err and "embodia export" in err


def test_invalid_model_is_one_clear_error_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    code, err = _run_cli(["serve", str(bad), "--port", "0"], monkeypatch, capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "bad.onnx is not a valid ONNX model" in err


def test_bad_option_names_the_flag(model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    code, err = _run_cli(["serve", str(model_path), "--framework", "flask"], monkeypatch, capsys)
    assert code == 2 and "--framework" in err


def test_missing_token_file_is_one_clear_error_line(model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    code, err = _run_cli(["serve", str(model_path), "--port", "0", "--token-file", str(tmp_path / "nope")],
                         monkeypatch, capsys)
    assert code == 2 and err.strip().count("\n") == 0 and "--token-file" in err and "does not exist" in err


def test_non_finite_timeout_names_the_flag(model_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    code, err = _run_cli(["serve", str(model_path), "--request-timeout-s", "nan"], monkeypatch, capsys)
    assert code == 2 and "--request-timeout-s" in err


@pytest.mark.slow
def test_serve_command_answers_until_interrupted(model_path: Path) -> None:
    executable = Path(sys.executable).with_name("embodia")
    process = subprocess.Popen([str(executable), "serve", str(model_path), "--port", "0"], stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "COLUMNS": "300"})
    try:
        line = process.stderr.readline()  # "serving ... at http://127.0.0.1:PORT ..."
        url = next(word for word in line.split() if word.startswith("http://"))
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"{url}/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"server at {url} never answered"
                time.sleep(0.1)
        assert reply.json()["status"] == "ok"
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) in (0, 130)  # uvicorn re-raises Ctrl-C after a clean shutdown
