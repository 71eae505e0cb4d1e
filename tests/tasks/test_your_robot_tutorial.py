"""docs/your-robot.md runs as written: every ```bash block, in order, from the repository root (tiny budgets)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "your-robot.md"


def tutorial_script(out: Path) -> str:
    """The tutorial's shell blocks joined into one script, with its budget variables made tiny."""
    blocks = re.findall(r"^```bash\n(.*?)^```", TUTORIAL.read_text(), flags=re.S | re.M)
    script = "\n".join(blocks)
    tiny = {"OUT": str(out), "STEPS": "4096", "EPISODES": "2"}
    for name, value in tiny.items():
        script, count = re.subn(rf"^{name}=\S+", f"{name}={value}", script, flags=re.M)
        assert count == 1, f"the tutorial's first block must set {name}"
    return "set -euo pipefail\n" + script


@pytest.mark.slow
def test_the_tutorial_runs_end_to_end(tmp_path):
    bin_dir = Path(sys.executable).parent  # `embodia` and `python` of this environment first on the PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["bash", "-c", tutorial_script(tmp_path / "out")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    for produced in ("arm-random.mp4", "reach-random.mp4", "eval/report.html", "eval/results.json", "export/policy.onnx"):
        assert (out / produced).stat().st_size > 0, produced
    assert "served action:" in result.stdout and "single env: 100 steps" in result.stdout
    assert "joint error after 1 s:" in result.stdout
    error = float(re.search(r"joint error after 1 s: ([0-9.e-]+)", result.stdout).group(1))
    assert error < 0.1  # the URDF's servos track their targets
