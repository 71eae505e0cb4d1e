"""MuJoCo 3.x vs 4.x physics cost on embodia's own models: the same MJCF stepped in each version's interpreter.

Each interpreter (this one, and `--other-python`, e.g. a side virtualenv with `mujoco<4`) runs a small worker that
loads the model file, applies uniform random controls and times `mj_step` (µs per physics step). The versions
alternate (A, B, A, B ...) `--rounds` times; the ratio is the median of the per-round ratios.

Usage: python benchmarks/mujoco_versions.py --other-python /work/main/.mujoco3-venv/bin/python
       [--rounds 5] [--markdown benchmarks/results/mujoco_versions.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _ceiling import load_line, median_ratio

ASSETS = Path(__file__).resolve().parent.parent / "embodia" / "tasks" / "assets"
MODELS = {"cheetah-run": "cheetah.xml", "ant-walk": "ant.xml", "arm-pick-place": "arm_cube.xml"}

# runs in the other interpreter too: only mujoco and numpy
WORKER = """
import json, sys, time
import mujoco, numpy as np
model = mujoco.MjModel.from_xml_path(sys.argv[1])
data = mujoco.MjData(model)
rng = np.random.default_rng(0)
low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
controls = rng.uniform(low, high, (int(sys.argv[2]), model.nu))
for ctrl in controls[:200]:
    data.ctrl[:] = ctrl
    mujoco.mj_step(model, data)
start = time.process_time()
for ctrl in controls:
    data.ctrl[:] = ctrl
    mujoco.mj_step(model, data)
    if data.warning.number[:].any():
        mujoco.mj_resetData(model, data)
print(json.dumps({"version": mujoco.__version__, "us": (time.process_time() - start) / len(controls) * 1e6}))
"""


def step_cost(python: str, xml: Path, steps: int) -> tuple[str, float]:
    """(MuJoCo version, CPU µs per mj_step) of `xml` in the interpreter `python`."""
    done = subprocess.run([python, "-c", WORKER, str(xml), str(steps)], capture_output=True, text=True, check=True)
    reply = json.loads(done.stdout.strip().splitlines()[-1])
    return reply["version"], reply["us"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-python", required=True, help="interpreter with the other MuJoCo version")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    load_before = load_line()
    rows, versions = [], {}
    for task, xml in MODELS.items():
        costs: dict[str, list[float]] = {"this": [], "other": []}
        for _ in range(args.rounds):
            for key, python in (("this", sys.executable), ("other", args.other_python)):
                version, micros = step_cost(python, ASSETS / xml, args.steps)
                versions[key] = version
                costs[key].append(micros)
        ratio = median_ratio(costs["this"], costs["other"])
        rows.append(f"| {task} (`{xml}`) | {statistics.median(costs['other']):.1f} | "
                    f"{statistics.median(costs['this']):.1f} | {ratio:.2f}× |")
        print(rows[-1], flush=True)
    header = (f"| model | MuJoCo {versions['other']} µs/step | MuJoCo {versions['this']} µs/step | "
              f"{versions['this']} / {versions['other']} cost |")
    table = "\n".join([header, "|---|---:|---:|---:|", *rows])
    setup = (f"{load_before} before, {load_line()} after; CPU time of {args.steps} `mj_step` calls under random "
             f"controls, {args.rounds} alternating rounds, medians")
    print(table, setup, sep="\n")
    if args.markdown:
        args.markdown.write_text(f"# MuJoCo version cost (issue 11)\n\n{setup}.\nCommand: `python "
                                 f"benchmarks/mujoco_versions.py --other-python PY --markdown {args.markdown}`\n\n"
                                 f"{table}\n")


if __name__ == "__main__":
    main()
