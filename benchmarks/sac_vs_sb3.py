"""embodia SAC vs Stable-Baselines3 SAC at the same update-to-data ratio (1 gradient step per env step).

embodia: shipped `cheetah-run_sac.yaml` with `utd_ratio: 1` and the actor updated every step (SB3's schedule),
on cheetah-run. SB3: rl-zoo's HalfCheetah SAC entry (SB3's defaults with `learning_starts: 10000`) on Gymnasium's
own HalfCheetah-v5. Both start learning after the same `--learning-starts` env steps (rl-zoo's 10,000 would leave
nothing to learn in a small budget, and timing random steps says nothing about the learner). Seeds interleaved:
round r runs both with seed r; the speed figure is the median of the per-seed ratios.
Usage: python benchmarks/sac_vs_sb3.py [--steps 6000] [--seeds 5] [--learning-starts 1000]
  split over two processes: --seed-list 0,1,2 --json rl_sac.a.json and --seed-list 3,4 --json rl_sac.b.json, then
  --report-only --json rl_sac.a.json rl_sac.b.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rl_baselines import (
    RESULTS,
    fmt_ci,
    hand_written_reading,
    load_line,
    paired_speed_ratio,
    plot_curves,
    run_embodia,
    run_sb3,
    zoo_hyperparams,
)

from embodia.core.atomic import atomic_write_text
from embodia.learn.nets import resolve_precision
from embodia.learn.sac import SACConfig

SPEED_TARGET = 2.0
PLOT_LINE = "![SAC learning curves](sac_cheetah.png)"  # the generated page ends here; the reading follows


def stored_sb3_runs(path: Path, steps: int, learning_starts: int, sb3_name: str) -> dict[int, dict]:
    """{seed: SB3 run} from an earlier record of this benchmark with the same budget (SB3's runs are seeded, so its
    returns repeat; its CPU-seconds were measured under that run's load)."""
    stored = json.loads(path.read_text())
    if (stored["steps"], stored["learning_starts"]) != (steps, learning_starts) or sb3_name not in stored["runs"]:
        raise ValueError(f"{path} holds {stored['steps']} steps / learning starts {stored['learning_starts']} / "
                         f"{list(stored['runs'])}; reuse needs {steps} / {learning_starts} / {sb3_name!r}")
    return dict(zip(stored["seed_list"], stored["runs"][sb3_name]))


def run_rounds(steps: int, seeds: list[int], learning_starts: int, out: Path, reuse_sb3: Path | None = None) -> dict:
    """Both contenders once per seed, interleaved (SB3 taken from `reuse_sb3` when given); stored in `out` after
    every round."""
    zoo_key, zoo = zoo_hyperparams("sac", "HalfCheetah-v5")
    zoo = {**zoo, "learning_starts": learning_starts}
    ours_settings = {"utd_ratio": 1.0, "policy_frequency": 1, "learning_starts": learning_starts}
    defaults = SACConfig()
    precision = resolve_precision(defaults.precision, defaults.batch_size, defaults.hidden_sizes)  # what "auto" runs here
    names = (f"embodia SAC ({precision} update), cheetah-run", f"SB3 SAC rl-zoo ({zoo_key}), HalfCheetah-v5")
    record: dict = {"steps": steps, "seeds": len(seeds), "seed_list": list(seeds), "learning_starts": learning_starts,
                    "load": [], "runs": {name: [] for name in names}}
    reused = stored_sb3_runs(reuse_sb3, steps, learning_starts, names[1]) if reuse_sb3 else {}
    if reuse_sb3:
        loads = json.loads(reuse_sb3.read_text())["load"]
        record["sb3_reused_from"] = f"{reuse_sb3.name} ({loads[0]} at its start, {loads[-1]} at its end)"
    eval_every = max(1000, steps // 3)
    for seed in seeds:
        record["load"].append(load_line())
        record["runs"][names[0]].append(run_embodia("cheetah-run", "sac", steps, seed, ours_settings, eval_every))
        record["runs"][names[1]].append(reused[seed] if seed in reused else
                                        run_sb3("gym:HalfCheetah-v5", "sac", steps, seed, zoo, eval_every))
        for name in names:
            print(f"seed {seed} {name}: {record['runs'][name][-1]['sps']:,.1f} env-steps/s, "
                  f"return {record['runs'][name][-1]['final_return']:.1f} ({load_line()})", flush=True)
        atomic_write_text(out, json.dumps(record))
    return record


def merge_records(records: list[dict]) -> dict:
    """Parts of one benchmark run side by side (disjoint seed lists) as one record."""
    merged = json.loads(json.dumps(records[0]))
    for extra in records[1:]:
        if (extra["steps"], extra["learning_starts"], list(extra["runs"])) != (
                merged["steps"], merged["learning_starts"], list(merged["runs"])):
            raise ValueError("records differ in step budget, learning starts or contenders; merge only parts of one run")
        for key in ("load", "seed_list"):
            merged[key] = merged.get(key, []) + extra.get(key, [])
        for name in merged["runs"]:
            merged["runs"][name] += extra["runs"][name]
    merged["seeds"] = len(next(iter(merged["runs"].values())))
    return merged


def report(record: dict) -> str:
    """The markdown results section."""
    ours, theirs = record["runs"].values()
    median, low, high = paired_speed_ratio(ours, theirs)
    has_cpu = all("cpu_sps" in r for r in ours + theirs)
    cpu_line = ""
    if has_cpu:
        cpu_median, cpu_low, cpu_high = paired_speed_ratio(ours, theirs, key="cpu_sps")
        cpu_line = (f"; per CPU-second (each contender one torch thread; on this shared VM load still inflates CPU time): "
                    f"{cpu_median:.2f}x ({cpu_low:.2f}–{cpu_high:.2f})")
    ours_mean, sb3_mean = np.mean([r["final_return"] for r in ours]), np.mean([r["final_return"] for r in theirs])
    pairing = "interleaved"
    if "sb3_reused_from" in record:
        pairing = (f"SB3's seeded runs reused from {record['sb3_reused_from']} (not beside ours: only the "
                   "CPU-second ratio compares them, and theirs ran at a lower load)")
    lines = ["# SAC vs SB3 SAC at update-to-data 1 (issue 11)", "",
             (f"`python benchmarks/sac_vs_sb3.py --steps {record['steps']} --seeds {len(ours)} --learning-starts "
             f"{record['learning_starts']}` — **{record['steps']:,} env steps per run** ({record['steps'] - record['learning_starts']:,} "
             f"of them learning, one gradient step each, batch 256, 256x256 networks for both), {len(ours)} seeds, "
             f"{pairing}; ours: {record['load'][0]} at the start, {record['load'][-1]} at the last round."), "",
             "| contender | env-steps/s (mean) | final return (mean ± 95 % CI) | per seed |", "|---|---:|---:|---|"]
    for name, runs in record["runs"].items():
        returns = [r["final_return"] for r in runs]
        lines.append(f"| {name} | {np.mean([r['sps'] for r in runs]):,.1f} | {fmt_ci(returns)} | "
                     f"{', '.join(f'{v:.0f}' for v in returns)} |")
    lines += ["", (f"- **{'met' if median >= SPEED_TARGET else 'NOT MET'}** — speed at utd 1: {median:.2f}x "
              f"({low:.2f}–{high:.2f}) SB3 in wall-clock env-steps/s{cpu_line}, target >= {SPEED_TARGET:.0f}x"),
              (f"- **{'met' if ours_mean >= sb3_mean else 'NOT MET'}** — return {ours_mean:.0f} vs SB3 {sb3_mean:.0f} "
              "(target: not below SB3's mean; at this budget both are close to the start)"), "",
              PLOT_LINE, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6_000, help="env steps per training run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per contender")
    parser.add_argument("--learning-starts", type=int, default=1_000, help="random env steps before learning, both")
    parser.add_argument("--seed-list", type=str, default=None,
                        help="comma-separated seeds instead of --seeds (run parts side by side, then --report-only)")
    parser.add_argument("--json", nargs="+", default=["rl_sac.json"],
                        help="results file(s) under benchmarks/results (several: merged by --report-only)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from the --json file(s)")
    parser.add_argument("--reuse-sb3", type=str, default=None,
                        help="take SB3's runs for these seeds from this earlier record under benchmarks/results "
                             "(same steps and learning starts) instead of running them again")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.report_only:
        record = merge_records([json.loads((RESULTS / name).read_text()) for name in args.json])
        if len(args.json) > 1:
            atomic_write_text(RESULTS / "rl_sac.json", json.dumps(record))
    else:
        seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
        began = time.perf_counter()
        reuse = RESULTS / args.reuse_sb3 if args.reuse_sb3 else None
        record = run_rounds(args.steps, seeds, args.learning_starts, RESULTS / args.json[0], reuse)
        print(f"{time.perf_counter() - began:.0f} s")
    plot_curves(record["runs"], f"SAC at utd 1, {record['steps']:,} env steps", RESULTS / "sac_cheetah.png")
    text = report(record)
    page = RESULTS / "rl_sac.md"
    atomic_write_text(page, text + hand_written_reading(page, PLOT_LINE))  # the reading under the plot stays
    print(text)


if __name__ == "__main__":
    main()
