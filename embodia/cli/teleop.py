"""`embodia teleop`: record human demonstrations from the terminal's keyboard into a LeRobot dataset (the same
session and key map as the console's Teleoperate page; the picture is summarised as a status line)."""

from __future__ import annotations

import contextlib
import os
import select
import sys
from pathlib import Path
from typing import Self

import typer

from embodia.cli.options import MAX_EPISODES, MAX_SEED
from embodia.core.errors import UserError

# terminal escape sequences -> the browser's key names (KeyboardEvent.key, lower case)
ESCAPES = {b"\x1b[A": "arrowup", b"\x1b[B": "arrowdown", b"\x1b[C": "arrowright", b"\x1b[D": "arrowleft",
           b"\x1bOA": "arrowup", b"\x1bOB": "arrowdown", b"\x1bOC": "arrowright", b"\x1bOD": "arrowleft"}
CONTROL = {b"\r": "enter", b"\n": "enter", b"\x7f": "backspace", b"\x08": "backspace", b"\x03": "ctrl-c",
           b"\x1b": "escape", b" ": " "}


def parse_terminal_keys(data: bytes) -> list[str]:
    """Key names in a chunk read from a raw terminal: arrows, Enter, Backspace, Esc, Ctrl-C, Space, letters."""
    keys, index = [], 0
    while index < len(data):
        for sequence, name in ESCAPES.items():
            if data.startswith(sequence, index):
                keys.append(name)
                index += len(sequence)
                break
        else:
            char = data[index : index + 1]
            if char in CONTROL:
                keys.append(CONTROL[char])
            elif char.isalpha():
                keys.append(char.decode().lower())
            index += 1
    return keys


class TerminalKeys:
    """Keys typed on this terminal, read without echo or line buffering; restores the terminal on exit."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdin
        if not self.stream.isatty():
            raise UserError("embodia teleop reads the keyboard: run it in an interactive terminal (stdin is not a TTY)")
        self.fd = self.stream.fileno()
        self._saved = None

    def __enter__(self) -> Self:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setraw(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        import termios

        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def poll(self) -> list[str] | None:
        """Keys typed since the last call (an empty list when none)."""
        data = b""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 64)
            if not chunk:
                return None  # the terminal closed
            data += chunk
        return parse_terminal_keys(data)


def terminal_keys() -> TerminalKeys:
    """The key source of `embodia teleop` (tests replace it with a scripted one)."""
    return TerminalKeys()


OUT_OPTION = typer.Option(..., file_okay=False, help="new dataset directory to write")


def teleop_command(
    task: str = typer.Option("arm-pick-place", help="an arm task with a gripper: arm-pick-place or arm-push"),
    out: Path = OUT_OPTION,
    episodes: int = typer.Option(1, min=1, max=MAX_EPISODES, help="episodes to record (Enter ends each one)"),
    camera: str = typer.Option("front", help="the task camera recorded with the episodes"),
    image_size: int = typer.Option(256, min=64, max=640, help="square camera image size in pixels (even)"),
    max_episode_s: float = typer.Option(60.0, min=0.1, max=3600.0, help="an episode is cut after this long (s)"),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="episode k starts from the k-th seed of this one"),
    operator: str = typer.Option("", help="who drives (recorded in the manifest; default: your user name)"),
    project: str = typer.Option("", help="also register the dataset in the workspace's registry for this project"),
    window: bool = typer.Option(False, help="also show the camera in a matplotlib window (needs a display)"),
) -> None:
    """Drive an arm from the keyboard and record the episodes as a LeRobot dataset (same format as data generate)."""
    from embodia.core.config import validate_config
    from embodia.data.teleop import (
        KEY_HELP,
        TeleopConfig,
        TeleopSession,
        drive_with_keys,
    )
    from embodia.platform.registry import current_user

    if project:
        from embodia.platform.api.auth import check_project

        check_project(project)  # a bad name is refused before anything is recorded
    config = validate_config(TeleopConfig, {"task": task, "camera": camera, "image_size": image_size, "seed": seed,
                                            "max_episode_s": max_episode_s, "operator": operator or current_user(),
                                            "project": project},
                             flags=True)
    if window and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("--window needs a display (DISPLAY or WAYLAND_DISPLAY is unset); drop --window to use the "
                        "status line only")
    keys = terminal_keys()
    session = TeleopSession(config, out)
    picture = None
    try:
        picture = PictureWindow(session) if window else None
        on_status = _status_writer(sys.stderr, picture)
        sys.stderr.write("keys: " + "; ".join(f"{key}: {what}" for key, what in KEY_HELP) + "; Esc: stop\n")
        with keys if hasattr(keys, "__enter__") else contextlib.nullcontext():
            kept = drive_with_keys(session, keys, episodes=episodes, on_status=on_status)
        sys.stderr.write("\n")
        if kept == 0:
            raise UserError("no episode was kept (press Enter to end an episode and keep it); nothing written")
        manifest = session.save()
    finally:
        if picture is not None:
            picture.close()
        session.close()
    summary = manifest.summary
    print(f"wrote {out}: {summary['episodes']} episodes, {summary['frames']} frames, "
          f"{summary['successes']} successful (check it with `embodia data check {out}`)")
    if project:
        print(f"registered as {_register(out, project)} in project {project}")


def _register(out: Path, project: str) -> str:
    from embodia.platform.store import open_store
    from embodia.platform.teleop import register_recording

    store = open_store()
    try:
        return register_recording(store, out, project).ref
    finally:
        store.close()


def _status_writer(stream, picture: PictureWindow | None = None):
    """Rewrites one status line in place (carriage return, clear to the end of the line); redraws the window."""
    def write(status) -> None:
        stream.write("\r" + status.line() + "\x1b[K")
        stream.flush()
        if picture is not None:
            picture.update()
    return write


class PictureWindow:
    """The session's camera picture in a matplotlib window, redrawn every `every` control steps (drawing costs
    about as much as a step). Keys are still read from the terminal: keep it focused."""

    def __init__(self, session, every: int = 2) -> None:
        import matplotlib.pyplot as plt

        plt.ion()
        self.plt, self.session, self.every, self.count = plt, session, every, 0
        self.figure, axes = plt.subplots(figsize=(4, 4))
        axes.set_axis_off()
        axes.set_title(f"{session.config.task}: {session.config.camera} camera")
        self.image = axes.imshow(session.frame)
        self.figure.canvas.draw_idle()

    def update(self) -> None:
        """Show the session's newest frame (every `every`-th call)."""
        self.count += 1
        if self.count % self.every:
            return
        self.image.set_data(self.session.frame)
        self.figure.canvas.draw_idle()
        self.figure.canvas.flush_events()

    def close(self) -> None:
        self.plt.close(self.figure)


def register(app: typer.Typer) -> None:
    """Mount `embodia teleop` on the root app."""
    app.command("teleop")(teleop_command)
