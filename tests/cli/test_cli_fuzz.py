"""Every command, every numeric and path option, driven with generated bad values (Hypothesis).

Commands and options are enumerated from the Typer app, so a new command or option is covered (and must
declare its bounds) without touching this file. Each bad value must be refused with exit code 2 and one line
on stderr naming the option, no traceback, and nothing written to the working directory.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import pytest
import typer
import typer.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from embodia.cli import app

NON_NUMBERS = ["abc", "", "1e", "0x10", "--", "nan", "inf", "-inf", "1.5.2", "١٢"]
# values for the required parameters around the one under test; they only need to parse
REQUIRED_VALUES = {"task": "cartpole-swingup", "suite": "cartpole-swingup", "baseline": "random", "candidate": "random",
                   "model": "policy.onnx", "job_type": "sleep"}


def leaf_commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(name path, Click command) of every runnable command under `command`."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from leaf_commands(sub, (*path, name))
    else:
        yield path, command


def kind(param: Any) -> str | None:
    """'int', 'float' or 'path' for the parameters this test drives, else None."""
    annotation = param.type_descriptor.annotation
    if getattr(param, "is_flag", False) or param.multiple:
        return None
    if annotation in (int, float):
        return annotation.__name__
    if annotation is Path:
        return "path"
    return None


COMMANDS = list(leaf_commands(typer.main.get_command(app)))
DRIVEN = [(path, command, param) for path, command in COMMANDS for param in command.params if kind(param)]


def names(param: Any) -> list[str]:
    """How an error message may name the parameter: its flags, or an argument's name or metavar."""
    if param.param_type_name == "option":
        return list(param.opts)
    return [name for name in (param.name, param.name.upper(), param.metavar) if name]


def case_id(case: tuple) -> str:
    path, _, param = case
    return f"{' '.join(path)} {names(param)[0]}"


def path_constraints(param: Any) -> tuple[bool, bool, bool]:
    info = param.type_descriptor.parameter_info
    return bool(getattr(info, "exists", False)), getattr(info, "file_okay", True), getattr(info, "dir_okay", True)


def bad_numbers(param: Any) -> st.SearchStrategy[str]:
    """Strings that are not numbers, or numbers outside [param.min, param.max] (NaN and infinities included)."""
    low, high = param.min, param.max
    if kind(param) == "int":
        specials = [low - 1, high + 1, -1 if low >= 0 else low - 10**6, 10**30, -(10**30)] + ([0] if low > 0 else [])
        numbers = st.one_of(st.sampled_from(specials), st.integers(max_value=low - 1), st.integers(min_value=high + 1))
        return st.one_of(numbers.map(str), st.sampled_from(NON_NUMBERS))
    below = st.floats(max_value=low, exclude_max=True, allow_nan=False)
    above = st.floats(min_value=high, exclude_min=True, allow_nan=False)
    specials = [math.nan, math.inf, -math.inf, -1.0 if low >= 0 else low - 1.0, high * 10 + 1] + ([0.0] if low > 0 else [])
    return st.one_of(st.sampled_from(specials), below, above).map(repr) | st.sampled_from(["abc", "", "1,5", "--"])


def bad_paths(param: Any, existing_file: Path, existing_dir: Path) -> list[str]:
    """Paths this parameter declares wrong: missing when it must exist, a file for a directory and vice versa."""
    exists, file_okay, dir_okay = path_constraints(param)
    bad = []
    if exists or param.param_type_name == "argument":  # an input the command itself checks must be named too
        bad.append(str(existing_dir / "no" / "such" / "path"))
    if not file_okay:
        bad.append(str(existing_file))
    if not dir_okay:
        bad.append(str(existing_dir))
    return bad


def argv(path: tuple[str, ...], command: Any, param: Any, value: str, existing_file: Path, existing_dir: Path) -> list[str]:
    """The command line: a bad option first (so it is the first parameter Click checks), then what is required."""
    positionals, options = [], []
    for other in command.params:
        if other is param:
            if other.param_type_name == "argument":
                positionals.append(value)
            continue
        if other.param_type_name == "argument" and other.required:
            positionals.append(_valid(other, existing_file, existing_dir))
        elif other.required:
            options += [other.opts[0], _valid(other, existing_file, existing_dir)]
    if param.param_type_name == "option":
        return [*path, param.opts[0], value, *options, "--", *positionals]
    return [*path, *options, "--", *positionals]  # "--": a negative number is a value, not an option


def _valid(param: Any, existing_file: Path, existing_dir: Path) -> str:
    if kind(param) in ("int", "float"):
        return str(param.min if param.min is not None else 1)
    if kind(param) == "path":
        return str(existing_dir if path_constraints(param)[2] else existing_file)
    return REQUIRED_VALUES.get(param.name, "x")


def assert_refused(result: Any, param: Any, value: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    shown = f"value {value!r}: exit {result.exit_code}, stderr {result.stderr!r}, exception {result.exception!r}"
    assert result.exit_code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error:"), shown
    assert "Traceback" not in result.output, shown
    assert any(name in lines[0] for name in names(param)) or (value and value in lines[0]), shown


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fuzz-inputs")
    existing_file = root / "a_file.txt"
    existing_file.write_text("not what any command wants\n")
    existing_dir = root / "a_dir"
    existing_dir.mkdir()
    return existing_file, existing_dir


@pytest.fixture(scope="module", autouse=True)
def one_click_command() -> Iterator[None]:
    """Build the Click command tree once, not per invocation (Typer's runner rebuilds it every time)."""
    command = typer.main.get_command(app)
    if not hasattr(typer.testing, "_get_command"):
        yield
        return
    with mock.patch.object(typer.testing, "_get_command", lambda _app: command):
        yield


def run_isolated(args: list[str]) -> tuple[Any, list[str]]:
    """Invoke in a fresh empty working directory; returns the result and whatever was left there."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="embodia-fuzz-") as work:
        os.chdir(work)
        try:
            result = CliRunner().invoke(app, args)
            left = sorted(os.listdir(work))
        finally:
            os.chdir(previous)
    return result, left


def test_every_command_is_driven():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"sim bench", "sim video", "train", "data generate", "eval run", "eval compare", "serve"} <= names
    assert len(DRIVEN) >= 30


@pytest.mark.parametrize("case", [c for c in DRIVEN if kind(c[2]) in ("int", "float")], ids=case_id)
def test_every_numeric_option_declares_its_bounds(case):
    _, _, param = case
    assert param.min is not None and param.max is not None, f"{case_id(case)}: declare min= and max="
    assert math.isfinite(param.min) and math.isfinite(param.max) and param.min <= param.max


@pytest.mark.parametrize("case", [c for c in DRIVEN if kind(c[2]) in ("int", "float")], ids=case_id)
@settings(max_examples=15, deadline=None, database=None)
@given(data=st.data())
def test_bad_numbers_are_refused_in_one_line_naming_the_option(case, data, fixtures_dir):
    path, command, param = case
    if param.min is None or param.max is None:
        pytest.fail(f"{case_id(case)}: declare min= and max=")
    value = data.draw(bad_numbers(param), label="value")
    result, left = run_isolated(argv(path, command, param, value, *fixtures_dir))
    assert_refused(result, param, value)
    assert left == [], f"{value!r} left {left}"


@pytest.mark.parametrize("case", [c for c in DRIVEN if kind(c[2]) == "path"], ids=case_id)
def test_bad_paths_are_refused_in_one_line_naming_the_option(case, fixtures_dir):
    path, command, param = case
    for value in bad_paths(param, *fixtures_dir):
        result, left = run_isolated(argv(path, command, param, value, *fixtures_dir))
        assert_refused(result, param, value)
        assert left == [], f"{value!r} left {left}"
