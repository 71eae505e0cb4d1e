"""`embodia eval`: run writes a report, compare exits 1 only for a worse candidate, bad input exits 2."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from embodia.cli import app

from .conftest import LQR_SPEC

runner = CliRunner()


def test_eval_run_writes_report(tmp_path):
    result = runner.invoke(app, ["eval", "run", "cartpole-balance", "--policy", LQR_SPEC, "--out", str(tmp_path),
                                 "--no-videos", "--episodes", "4", "-s", "nominal", "-s", "big-push"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file() and (tmp_path / "results.json").is_file()
    assert "big-push" in result.output


def test_eval_compare_gates_on_worse(tmp_path):
    args = ["eval", "compare", "cartpole-balance", "--episodes", "10", "-s", "nominal", "--out"]
    worse = runner.invoke(app, [*args, str(tmp_path / "w"), "--baseline", LQR_SPEC, "--candidate", "random"])
    assert worse.exit_code == 1, worse.output
    assert "gate: worse" in worse.output
    same = runner.invoke(app, [*args, str(tmp_path / "s"), "--baseline", LQR_SPEC, "--candidate", LQR_SPEC])
    assert same.exit_code == 0, same.output
    assert "indistinguishable" in same.output


def test_bad_suite_is_one_red_line_with_exit_code_2(tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text("name: s\ntask: cartpole-balance\nscenarios:\n  - name: a\n    sensor: {noise: 0.1}\n")
    result = subprocess.run([sys.executable, "-c", "from embodia.cli import main; main()", "eval", "validate",
                             str(suite)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "scenarios[0].sensor.noise" in result.stderr and "Traceback" not in result.stderr
