"""`embodia teleop`: scripted keys in place of the terminal write the same dataset as the console; terminal
bytes parse to the browser's key names; no terminal is a one-line error."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from embodia.cli import app
from embodia.cli import teleop as teleop_cli
from embodia.core.manifest import Manifest
from embodia.data.check import check_dataset
from embodia.data.teleop import ScriptedKeys


def test_teleop_records_the_episodes_asked_for_from_scripted_keys(tmp_path, monkeypatch):
    script = [["w"]] * 3 + [["q"]] * 2 + [["enter"]] + [["a"], [" "], ["enter"]] + [["d"]] * 50
    monkeypatch.setattr(teleop_cli, "terminal_keys", lambda: ScriptedKeys(script))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["teleop", "--task", "arm-pick-place", "--out", str(out), "--episodes", "2",
                                      "--image-size", "64", "--operator", "grace"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "2 episodes, 7 frames" in result.stdout
    assert "episode 2 (kept 1)" in result.stderr  # the status line
    assert check_dataset(out).ok
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["embodia"]["teleop"]["operator"] == "grace"
    assert Manifest.read(out).stage == "teleop"


def test_project_registers_the_recording_with_lineage(tmp_path, monkeypatch):
    from embodia.platform import registry
    from embodia.platform.store import open_store

    monkeypatch.setenv("EMBODIA_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("EMBODIA_DB_URL", raising=False)
    monkeypatch.setattr(teleop_cli, "terminal_keys", lambda: ScriptedKeys([["w"], ["w"], ["enter"]]))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["teleop", "--out", str(out), "--image-size", "64", "--project", "lab"])
    assert result.exit_code == 0, result.output
    assert "registered as dataset:sha256:" in result.stdout and out.is_dir()
    store = open_store()
    try:
        (info,) = registry.list_artifacts(store, kind="dataset")
        assert info.stage == "teleop" and "human" in info.tags and info.manifest["config"]["project"] == "lab"
    finally:
        store.close()


def test_a_bad_project_name_is_refused_before_recording(tmp_path):
    result = CliRunner().invoke(app, ["teleop", "--out", str(tmp_path / "demo"), "--project", "no/slashes"])
    assert result.exit_code == 2 and "project name" in result.stderr and not (tmp_path / "demo").exists()


def test_window_shows_the_newest_frame_when_a_display_exists(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")  # a display is faked: the figure is drawn off screen
    monkeypatch.setenv("DISPLAY", ":99")
    shown = []
    original = teleop_cli.PictureWindow.update

    def update(window):
        original(window)
        shown.append(window.image.get_array().copy())

    monkeypatch.setattr(teleop_cli.PictureWindow, "update", update)
    monkeypatch.setattr(teleop_cli, "terminal_keys", lambda: ScriptedKeys([["w"]] * 4 + [["enter"]]))
    result = CliRunner().invoke(app, ["teleop", "--out", str(tmp_path / "demo"), "--image-size", "64", "--window"])
    assert result.exit_code == 0, result.output
    assert len(shown) == 5 and shown[-1].shape == (64, 64, 3)
    assert not (shown[1] == shown[3]).all()  # redrawn every second step, and the arm moved in between


def test_window_without_a_display_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(app, ["teleop", "--out", str(tmp_path / "demo"), "--window"])
    assert result.exit_code == 2 and "needs a display" in result.stderr and not (tmp_path / "demo").exists()


def test_escape_before_any_kept_episode_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(teleop_cli, "terminal_keys", lambda: ScriptedKeys([["w"], ["escape"]]))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["teleop", "--out", str(out), "--image-size", "64"])
    assert result.exit_code == 2 and "no episode was kept" in result.stderr
    assert not out.exists() and not (tmp_path / ".demo.partial").exists()


def test_teleop_without_a_terminal_is_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["teleop", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 2 and "interactive terminal" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "demo").exists()


def test_odd_image_size_names_the_option(tmp_path):
    result = CliRunner().invoke(app, ["teleop", "--out", str(tmp_path / "demo"), "--image-size", "65"])
    assert result.exit_code == 2 and "--image-size" in result.stderr and "even" in result.stderr


def test_terminal_bytes_parse_to_key_names():
    keys = teleop_cli.parse_terminal_keys(b"wA \x1b[A\x1b[D\r\x7f\x1b\x03x1")
    assert keys == ["w", "a", " ", "arrowup", "arrowleft", "enter", "backspace", "escape", "ctrl-c", "x"]


def test_terminal_keys_read_raw_bytes_from_a_pseudo_terminal():
    import os
    import pty
    import termios
    import time

    leader, follower = pty.openpty()
    try:
        with open(follower, "rb", buffering=0, closefd=False) as stream:
            keys = teleop_cli.TerminalKeys(stream)
            before = termios.tcgetattr(follower)
            with keys:
                assert keys.poll() == []
                os.write(leader, b"w\x1b[C \r")
                read, deadline = [], time.monotonic() + 5
                while len(read) < 4 and time.monotonic() < deadline:  # the pty may deliver in pieces
                    read += keys.poll()
                    time.sleep(0.01)
                assert read == ["w", "arrowright", " ", "enter"]
            assert termios.tcgetattr(follower) == before  # the terminal is restored
    finally:
        os.close(leader)
        os.close(follower)
