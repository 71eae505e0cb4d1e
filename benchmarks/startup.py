"""Start-up cost of whole processes: `import embodia` beyond `import numpy`, `embodia --help`, `embodia export`.

Each command is a fresh interpreter, timed wall-clock from start to exit; the commands run interleaved
(A, B, C, A, B, C ...) `--runs` times and the medians are kept. With `--baseline-tree` the same embodia commands
also run against another checkout (e.g. the commit before a change), interleaved with this tree's.

Usage: python benchmarks/startup.py [--runs 7] [--checkpoint RUN_DIR] [--baseline-tree PATH]
       [--markdown benchmarks/results/startup.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _ceiling import load_line

ROOT = Path(__file__).resolve().parent.parent
TARGETS_S = {"import embodia beyond numpy": 0.3, "embodia --help": 0.5, "embodia export (MLP)": 2.0}


def wall_seconds(argv: list[str], tree: Path) -> float:
    """Wall time of one process running `argv` with `tree` first on PYTHONPATH; a failure stops the benchmark."""
    env = dict(os.environ, PYTHONPATH=str(tree), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed


def commands(checkpoint: Path | None, out: Path) -> dict[str, list[str]]:
    """The timed commands; export only when a checkpoint is given."""
    python = sys.executable
    timed = {"python (empty)": [python, "-c", "pass"],
             "import numpy": [python, "-c", "import numpy"],
             "import numpy, embodia": [python, "-c", "import numpy, embodia"],
             "embodia --help": [python, "-m", "embodia", "--help"]}
    if checkpoint is not None:
        timed["embodia export (MLP)"] = [python, "-m", "embodia", "export", str(checkpoint), "--out", str(out)]
    return timed


def measure(trees: dict[str, Path], checkpoint: Path | None, runs: int) -> dict[str, dict[str, list[float]]]:
    """tree name -> command -> wall seconds of each run, all interleaved."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(runs):
            for name, tree in trees.items():
                for label, argv in commands(checkpoint, Path(scratch) / f"{name}-{run}").items():
                    if name != "this tree" and label in ("python (empty)", "import numpy"):
                        continue  # tree-independent
                    samples[name].setdefault(label, []).append(wall_seconds(argv, tree))
    return samples


def figures(samples: dict[str, list[float]], baseline: dict[str, list[float]]) -> dict[str, float]:
    """Medians, with import embodia counted beyond import numpy (paired per run)."""
    medians = {label: statistics.median(values) for label, values in samples.items()}
    numpy_runs = baseline["import numpy"]
    medians["import embodia beyond numpy"] = statistics.median(
        [both - alone for both, alone in zip(samples["import numpy, embodia"], numpy_runs)])
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--checkpoint", type=Path, default=None, help="an RL run or checkpoint dir to export")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="another checkout to time alongside")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.baseline_tree is not None:
        trees["baseline"] = args.baseline_tree.resolve()
    load_before = load_line()
    samples = measure(trees, args.checkpoint, args.runs)
    load_after = load_line()
    ours = figures(samples["this tree"], samples["this tree"])
    base = figures(samples["baseline"], samples["this tree"]) if "baseline" in samples else {}
    rows = []
    for label in ("python (empty)", "import numpy", "import embodia beyond numpy", "embodia --help",
                  "embodia export (MLP)"):
        if label not in ours:
            continue
        target = TARGETS_S.get(label)
        verdict = "" if target is None else ("met" if ours[label] <= target else "not met")
        before = f"{base[label]:.2f}" if label in base else "—"
        rows.append(f"| {label} | {before} | {ours[label]:.2f} | {'' if target is None else f'≤ {target}'} | {verdict} |")
    table = "\n".join(["| command (fresh process) | baseline tree s | this tree s | target s | |",
                       "|---|---:|---:|---:|---|", *rows])
    setup = (f"{load_before} before, {load_after} after; medians of {args.runs} interleaved runs"
             + (f"; baseline tree {args.baseline_tree}" if args.baseline_tree else ""))
    print(table, setup, sep="\n")
    if args.markdown:
        args.markdown.write_text(f"# Start-up cost (issue 11)\n\n{setup}.\nCommand: `python benchmarks/startup.py "
                                 f"--runs {args.runs} --checkpoint RUN --baseline-tree BASE --markdown "
                                 f"{args.markdown}`\n\n{table}\n")


if __name__ == "__main__":
    main()
