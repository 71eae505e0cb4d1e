"""Gymnasium MuJoCo suite: embodia PPO with its automatic defaults vs SB3 PPO (rl-zoo tuned, and SB3's defaults)
at the same env-step budget (issues 10 and 11).

embodia trains through `gym:<id>` tasks with `embodia/learn/auto_config.py`'s defaults (no per-task tuning);
SB3 trains on Gymnasium's own env with rl-zoo's tuned hyperparameters (`rl_zoo3/hyperparams/ppo.yml`, v4/v2 entry
of the same robot; Pusher has none, so rl-zoo's generic MuJoCo setting: VecNormalize over SB3's defaults) and
with SB3's plain defaults (issue 10's bar). Per task, round r runs every contender with seed r, so speed ratios
are per-seed pairs. Results are kept per task and contender in `results/gymnasium_suite.json`, so a run of some
tasks or contenders (`--tasks`, `--contenders`) updates those and the report is rebuilt from everything stored.
Usage: python benchmarks/gymnasium_suite.py [--steps 20480] [--seeds 5] [--tasks Reacher-v5,...]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
from rl_baselines import (
    RESULTS,
    evaluate,
    fmt_ci,
    hand_written_reading,
    load_line,
    mean_ci,
    paired_speed_ratio,
    plot_curves,
    run_embodia,
    run_sb3,
    zoo_hyperparams,
)

from embodia.core.atomic import atomic_write_text

TASKS = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Reacher-v5", "Pusher-v5",
         "InvertedDoublePendulum-v5"]
EMBODIA, ZOO, DEFAULTS = "embodia (auto defaults)", "SB3 rl-zoo tuned", "SB3 defaults"
SPEED_TARGET = 5.0
COLORS = {EMBODIA: "tab:blue", ZOO: "tab:orange", DEFAULTS: "tab:green"}
STORE = RESULTS / "gymnasium_suite.json"


def run_contender(name: str, env_id: str, steps: int, seed: int, eval_every: int | None = None) -> dict:
    """One training run of contender `name` on Gymnasium's `env_id`; a learning-curve point every `eval_every`
    steps (default: a quarter of the run)."""
    source, eval_every = f"gym:{env_id}", eval_every or max(2048, steps // 4)
    if name == EMBODIA:
        return run_embodia(source, "ppo", steps, seed, eval_every=eval_every)
    hyperparams = zoo_hyperparams("ppo", env_id)[1] if name == ZOO else None
    return run_sb3(source, "ppo", steps, seed, hyperparams, eval_every=eval_every)


def zero_action_return(env_id: str) -> float:
    """Deterministic return of the zero action: the 'hold still' bar short reaching tasks must beat."""
    import gymnasium as gym

    env = gym.make(env_id)
    shape = env.action_space.shape
    env.close()
    return evaluate(lambda obs: np.zeros((len(obs), *shape)), f"gym:{env_id}")


def run_task(env_id: str, names: list[str], steps: int, seeds: int, store: dict, path: Path = STORE,
             eval_every: int | None = None) -> None:
    """Every named contender on one task, interleaved seed by seed; stored after each round."""
    entry = store.setdefault(env_id, {})
    entry["zero_action"] = zero_action_return(env_id)
    batch = time.strftime("%Y-%m-%d %H:%M:%S")  # contenders of one batch ran interleaved
    for name in names:
        entry[name] = {"steps": steps, "batch": batch, "runs": []}
    for seed in range(seeds):
        for name in names:
            result = run_contender(name, env_id, steps, seed, eval_every)
            result["load"] = load_line()
            if name == EMBODIA:
                result["physics_threads"] = int(os.environ.get("EMBODIA_NUM_THREADS", "1"))
            entry[name]["runs"].append(result)
            print(f"{env_id} seed {seed} {name}: return {result['final_return']:.1f}, "
                  f"{result['sps']:,.0f} env-steps/s, {result['cpu_sps']:,.0f} per CPU-s ({result['load']})",
                  flush=True)
        save_task(path, env_id, entry, names)


def save_task(path: Path, env_id: str, entry: dict, names: list[str]) -> None:
    """Store the contenders `names` of one task, keeping everything else stored, under a file lock: suite
    processes running side by side (other tasks or other contenders) all update the same file."""
    with open(path.with_suffix(".lock"), "w") as lock:  # git-ignored
        fcntl.flock(lock, fcntl.LOCK_EX)
        stored = json.loads(path.read_text()) if path.exists() else {}
        task = stored.setdefault(env_id, {})
        task["zero_action"] = entry["zero_action"]
        task.update({name: entry[name] for name in names})
        atomic_write_text(path, json.dumps(stored))


def report(store: dict, png: Path = RESULTS / "gymnasium_suite.png") -> str:
    """The markdown results section from everything stored (ends with the plot's line)."""
    lines = ["# Gymnasium MuJoCo suite: embodia PPO (automatic defaults) vs SB3 PPO (issues 10, 11)", "",
             ("`python benchmarks/gymnasium_suite.py` — per task, every contender at the **same env-step budget** "
             "(column 'steps'), seeds 0..n-1 interleaved (round r runs each contender with seed r). Return: mean ± 95 % "
             "t-interval over seeds of the deterministic return on 8 episodes (seed 12345) of Gymnasium's own env, the "
             "same evaluation for every contender. Speed: median (min–max) of the per-seed ratios of env steps per "
             "CPU-second of training (learning included, evaluations excluded); every contender runs on one thread "
             "(torch and MuJoCo), so CPU time measures the work per step whatever the load of the shared machine. "
             "The budget is small (2 shared cores): rl-zoo's settings are tuned for 1M steps, so "
             "this says who learns faster in the first tens of thousands of steps, not who ends higher."), "",
             (f"| task | steps x seeds | zero action | {EMBODIA} | {ZOO} | {DEFAULTS} | speed embodia / tuned "
              "| speed embodia / defaults | return >= tuned | >= defaults | speed >= 5x tuned |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for env_id in TASKS:
        entry = store.get(env_id)
        if not entry or EMBODIA not in entry:
            lines.append(f"| {env_id} | not run | | | | | | | | | |")
            continue
        lines.append(_task_row(env_id, entry))
    lines += ["", ("† embodia and SB3 ran in separate batches (not interleaved), at different loads: on this shared VM "
                   "CPU time per step rises with the load too (hyperthreads), so such a ratio is only indicative; "
                   "interleaved runs measure it."),
              "‡ runs stored without CPU time: ratio of wall-clock env-steps/s, which depends on the load.",
              ("§ embodia's env physics on more than one thread (`--embodia-threads`, as a training run uses the "
               "cores it is given), SB3 at its fastest (one thread: its tuned config steps one env, and its "
               "small networks lose to torch threads here): ratio of wall-clock env-steps/s on the 2 cores."),
              "Load while each run finished (1/5/15-min averages) is stored per run in the results JSON.", "",
              plot_line(png), ""]
    return "\n".join(lines)


def plot_line(png: Path) -> str:
    """The page's plot line: the end of the generated section, above the reading written by hand."""
    return f"![suite learning curves]({png.name})"


def _task_row(env_id: str, entry: dict) -> str:
    ours = entry[EMBODIA]["runs"]
    cells, verdicts = [], []
    for name in (EMBODIA, ZOO, DEFAULTS):
        runs = entry.get(name, {}).get("runs")
        cells.append(fmt_ci([r["final_return"] for r in runs], 1) if runs else "not run")
    mine = mean_ci([r["final_return"] for r in ours])[0]
    for name in (ZOO, DEFAULTS):
        runs = entry.get(name, {}).get("runs")
        verdicts.append(("met" if mine >= mean_ci([r["final_return"] for r in runs])[0] else "**NOT MET**")
                        if runs and len(runs) == len(ours) else "–")
    speed, speed_ok = _speed_cell(entry, ZOO)
    speed_defaults, _ = _speed_cell(entry, DEFAULTS)
    budget = f"{entry[EMBODIA]['steps']:,} x {len(ours)}"
    return (f"| {env_id} | {budget} | {entry['zero_action']:.1f} | {cells[0]} | {cells[1]} | {cells[2]} | {speed} "
            f"| {speed_defaults} | {verdicts[0]} | {verdicts[1]} | {speed_ok} |")


def _speed_cell(entry: dict, name: str) -> tuple[str, str]:
    """(embodia / `name` paired ratio of env-steps per CPU-second, or of env-steps/s for runs stored without CPU
    time, marked ‡; † when not run interleaved), speed-target verdict."""
    ours, theirs = entry[EMBODIA]["runs"], entry.get(name, {}).get("runs")
    if not theirs or len(theirs) != len(ours):
        return "–", "–"
    threaded = any(r.get("physics_threads", 1) > 1 for r in ours)  # per CPU-second would not show what it buys
    key = "cpu_sps" if all("cpu_sps" in r for r in [*ours, *theirs]) and not threaded else "sps"
    median, low, high = paired_speed_ratio(ours, theirs, key)
    marks = ("" if entry[EMBODIA].get("batch") == entry[name].get("batch") else " †")
    marks += " §" if threaded else "" if key == "cpu_sps" else " ‡"
    return f"{median:.1f}x ({low:.1f}–{high:.1f}){marks}", "met" if median >= SPEED_TARGET else "**NOT MET**"


def plot(store: dict, png: Path) -> None:
    """One panel per task run: mean deterministic return vs env steps, min..max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in TASKS if t in store and EMBODIA in store[t]]
    if not done:
        return
    cols = min(4, len(done))
    rows = -(-len(done) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(done):]:
        ax.set_visible(False)
    for ax, env_id in zip(axes.flat, done):
        runs = {name: store[env_id][name]["runs"] for name in (EMBODIA, ZOO, DEFAULTS) if name in store[env_id]}
        plot_curves(runs, env_id, png, ax=ax, colors=COLORS)
        ax.axhline(store[env_id]["zero_action"], color="black", linestyle=":", lw=1)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embodia-threads", type=int, default=None,
                        help="physics threads of embodia's runs (default: EMBODIA_NUM_THREADS, else 1); above 1 the "
                             "speed column compares wall-clock env-steps/s")
    parser.add_argument("--steps", type=int, default=20_480, help="env steps per training run, every contender")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per contender")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated Gymnasium ids")
    parser.add_argument("--contenders", default=f"{EMBODIA},{ZOO},{DEFAULTS}", help="comma-separated contender names")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="env steps between learning-curve points (default: a quarter of --steps)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the stored results")
    parser.add_argument("--store", type=Path, default=STORE,
                        help="results file (JSON) read and updated; the page and plot go beside it (.md, .png)")
    args = parser.parse_args()
    if args.embodia_threads is not None:
        if args.embodia_threads < 1:
            raise SystemExit(f"--embodia-threads {args.embodia_threads}: expected 1 or more")
        os.environ["EMBODIA_NUM_THREADS"] = str(args.embodia_threads)
    # by default one physics thread (torch already uses one): every contender is one thread, so env-steps per
    # CPU-second compare the work each does per step whatever the load of the shared machine (set here, not on
    # import: the tests import this module and must not change the environment of everything after them)
    os.environ.setdefault("EMBODIA_NUM_THREADS", "1")
    store = json.loads(args.store.read_text()) if args.store.exists() else {}
    if not args.report_only:
        names = args.contenders.split(",")
        unknown = sorted(set(names) - {EMBODIA, ZOO, DEFAULTS}) + sorted(set(args.tasks.split(",")) - set(TASKS))
        if unknown:
            raise SystemExit(f"unknown contender or task {unknown}; contenders: {[EMBODIA, ZOO, DEFAULTS]}, tasks: {TASKS}")
        began = time.perf_counter()
        for env_id in args.tasks.split(","):
            run_task(env_id, names, args.steps, args.seeds, store, args.store, args.eval_every)
        print(f"{time.perf_counter() - began:.0f} s")
        store = json.loads(args.store.read_text())  # with what processes running alongside stored meanwhile
    page, png = args.store.with_suffix(".md"), args.store.with_suffix(".png")
    plot(store, png)
    text = report(store, png)
    atomic_write_text(page, text + hand_written_reading(page, plot_line(png)))
    print(text)


if __name__ == "__main__":
    main()
