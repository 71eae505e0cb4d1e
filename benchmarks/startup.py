"""Start-up cost of whole processes: `import embodia` beyond `import numpy`, `embodia --help`, `embodia export`,
and what videos add to `embodia eval run` (the cartpole-swingup suite with and without `--no-videos`).

Each command is a fresh interpreter, timed wall-clock from start to exit and in CPU seconds (user + system of the
child, `resource.getrusage(RUSAGE_CHILDREN)`: on a loaded machine the wall time mostly measures the queue); the
commands run interleaved (A, B, C, A, B, C ...) `--runs` times and the medians are kept. With `--baseline-tree` the
same embodia commands also run against another checkout (e.g. the commit before a change), interleaved with this
tree's.

Usage: python benchmarks/startup.py [--runs 7] [--checkpoint RUN_DIR] [--eval-policy POLICY] [--baseline-tree PATH]
       [--markdown benchmarks/results/startup.md]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _ceiling import load_line

ROOT = Path(__file__).resolve().parent.parent
TARGETS_S = {"import embodia beyond numpy": 0.3, "embodia --help": 0.5, "embodia export (MLP)": 2.0}
EVAL_SUITE = "cartpole-swingup"
VIDEO_RATIO_TARGET = 2.0  # `embodia eval run` with videos <= 2x its time without
CPU = " cpu"  # suffix of the CPU-seconds sample of a command


def timed_run(argv: list[str], tree: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one process running `argv` with `tree` first on PYTHONPATH; a failure stops the benchmark."""
    env = dict(os.environ, PYTHONPATH=str(tree), MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def commands(checkpoint: Path | None, out: Path, eval_policy: str | None = None) -> dict[str, list[str]]:
    """The timed commands; export only when a checkpoint is given, eval only with a policy."""
    python = sys.executable
    timed = {"python (empty)": [python, "-c", "pass"],
             "import numpy": [python, "-c", "import numpy"],
             "import numpy, embodia": [python, "-c", "import numpy, embodia"],
             "embodia --help": [python, "-m", "embodia", "--help"]}
    if checkpoint is not None:
        timed["embodia export (MLP)"] = [python, "-m", "embodia", "export", str(checkpoint), "--out", str(out)]
    if eval_policy is not None:
        run_eval = [python, "-m", "embodia", "eval", "run", EVAL_SUITE, "--policy", eval_policy]
        timed["embodia eval run (videos)"] = [*run_eval, "--out", str(out / "eval-videos")]
        timed["embodia eval run --no-videos"] = [*run_eval, "--out", str(out / "eval"), "--no-videos"]
    return timed


def measure(trees: dict[str, Path], checkpoint: Path | None, runs: int,
            eval_policy: str | None = None) -> dict[str, dict[str, list[float]]]:
    """tree name -> command -> wall seconds of each run (and command + CPU -> CPU seconds), all interleaved."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(runs):
            for name, tree in trees.items():
                for label, argv in commands(checkpoint, Path(scratch) / f"{name}-{run}", eval_policy).items():
                    if name != "this tree" and label in ("python (empty)", "import numpy"):
                        continue  # tree-independent
                    wall, cpu = timed_run(argv, tree)
                    samples[name].setdefault(label, []).append(wall)
                    samples[name].setdefault(label + CPU, []).append(cpu)
                    print(f"{name}: {label}: {wall:.2f} s wall, {cpu:.2f} s CPU, {load_line()}", flush=True)
    return samples


def video_ratios(samples: dict[str, list[float]]) -> dict[str, float]:
    """Median paired ratio of eval with videos over eval without (same run), wall and CPU."""
    ratios = {}
    for kind in ("", CPU):
        pairs = zip(samples["embodia eval run (videos)" + kind], samples["embodia eval run --no-videos" + kind])
        ratios["wall" if not kind else "CPU"] = statistics.median([videos / plain for videos, plain in pairs])
    return ratios


def figures(samples: dict[str, list[float]], baseline: dict[str, list[float]]) -> dict[str, float]:
    """Medians, with import embodia counted beyond import numpy (paired per run), in wall and CPU seconds."""
    medians = {label: statistics.median(values) for label, values in samples.items()}
    for kind in ("", CPU):
        medians["import embodia beyond numpy" + kind] = statistics.median(
            [both - alone for both, alone in zip(samples["import numpy, embodia" + kind], baseline["import numpy" + kind])])
    return medians


def verdict(value: float | None, target: float | None) -> str:
    return "" if value is None or target is None else ("met" if value <= target else "not met")


def table_rows(ours: dict[str, float], base: dict[str, float]) -> list[str]:
    """One markdown row per command: baseline and this tree, wall and CPU, target and verdicts."""
    rows = []
    for label in ("python (empty)", "import numpy", "import embodia beyond numpy", "embodia --help",
                  "embodia export (MLP)", "embodia eval run --no-videos", "embodia eval run (videos)"):
        if label not in ours:
            continue
        target = TARGETS_S.get(label)
        cells = [f"{base[key]:.2f}" if key in base else "—" for key in (label, label + CPU)]
        rows.append(f"| {label} | {cells[0]} | {ours[label]:.2f} | {cells[1]} | {ours[label + CPU]:.2f} | "
                    f"{'' if target is None else f'≤ {target}'} | {verdict(ours[label], target)} | "
                    f"{verdict(ours[label + CPU], target)} |")
    return rows


def ratio_lines(samples: dict[str, dict[str, list[float]]]) -> list[str]:
    """`eval run` with videos / without, per tree (paired per run), against the 2x target."""
    lines = []
    for name, tree_samples in samples.items():
        if "embodia eval run (videos)" in tree_samples:
            ratios = video_ratios(tree_samples)
            lines.append(f"- {name}: `embodia eval run {EVAL_SUITE}` with videos / without = {ratios['wall']:.2f}x "
                         f"wall, {ratios['CPU']:.2f}x CPU (target ≤ {VIDEO_RATIO_TARGET:g}x: wall "
                         f"{verdict(ratios['wall'], VIDEO_RATIO_TARGET)}, CPU {verdict(ratios['CPU'], VIDEO_RATIO_TARGET)})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--checkpoint", type=Path, default=None, help="an RL run or checkpoint dir to export")
    parser.add_argument("--eval-policy", default=None,
                        help=f"a policy for `embodia eval run {EVAL_SUITE}` (ONNX, run dir, or file.py:function)")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="another checkout to time alongside")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    if args.baseline_tree is not None:
        trees["baseline"] = args.baseline_tree.resolve()
    load_before = load_line()
    samples = measure(trees, args.checkpoint, args.runs, args.eval_policy)
    load_after = load_line()
    ours = figures(samples["this tree"], samples["this tree"])
    base = figures(samples["baseline"], samples["this tree"]) if "baseline" in samples else {}
    header = ("| command (fresh process) | baseline wall s | this tree wall s | baseline CPU s | this tree CPU s "
              "| target s | wall | CPU |")
    table = "\n".join([header, "|---|---:|---:|---:|---:|---:|---|---|", *table_rows(ours, base)])
    ratios = "\n".join(ratio_lines(samples))
    setup = (f"{load_before} before, {load_after} after; medians of {args.runs} interleaved runs; CPU = user + system "
             "seconds of the process (getrusage of children), the figure that load does not inflate"
             + (f"; baseline tree {args.baseline_tree}" if args.baseline_tree else ""))
    print(table, ratios, setup, sep="\n")
    if args.markdown:
        args.markdown.write_text(f"# Start-up cost (issue 11)\n\n{setup}.\nCommand: `python benchmarks/startup.py "
                                 f"--runs {args.runs} --checkpoint RUN --eval-policy POLICY --baseline-tree BASE "
                                 f"--markdown {args.markdown}`\n\n{table}\n\n{ratios}\n")


if __name__ == "__main__":
    main()
