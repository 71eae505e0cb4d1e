"""SAC training-loop CPU per env step on cheetah-run (bf16, utd 1), this tree vs a git revision, paired in one process.

The base revision's `embodia/learn/sac.py` is loaded from git as a second module (its imports of the rest of embodia
resolve to this tree, so the comparison isolates that file). Both trainers are built from seed 0 with
`sac_step_cost.py`'s settings and run past their random warm-up; each round then runs `--steps` env steps of each
(env step + one gradient step per env step, as `SACTrainer.learn` does) in alternating order, timed in CPU seconds
of this process. Reports the median of the paired base/this ratios and the load average.
Usage: python benchmarks/sac_loop_cost.py [--base REV] [--rounds 40] [--warm-up 1160]
(--warm-up: env steps before timing; the update's cost moves with training, e.g. with how many Adam moments decay
through the denormal range, so later phases are worth timing too)
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from _ceiling import alternating
from ppo_update_cost import module_at, revision_args
from rl_baselines import load_line, save_results
from sac_step_cost import LEARNING_STARTS, embodia_trainer, run_embodia
from threadpoolctl import threadpool_limits

from embodia.learn import sac

STEPS_PER_ROUND = 40


def paired_rounds(trainers: dict[str, sac.SACTrainer], rounds: int, steps: int, warm_up: int) -> dict[str, list[float]]:
    """CPU milliseconds per env step of each contender per round, the order alternating round by round, after
    `warm_up` env steps of each (random ones, then the first updates: workspaces, caches)."""
    names = list(trainers)
    cpu_ms: dict[str, list[float]] = {name: [] for name in names}
    with threadpool_limits(limits=1, user_api="blas"):
        for trainer in trainers.values():
            run_embodia(trainer, warm_up)
        for round_index in range(rounds):
            for name in alternating(names, round_index):
                start = time.process_time()
                run_embodia(trainers[name], steps)
                cpu_ms[name].append(1000.0 * (time.process_time() - start) / steps)
    return cpu_ms


def report(record: dict) -> str:
    """Markdown: median CPU ms per env step of each side, the paired ratio (median, IQR, min-max), the loads."""
    base, ours = np.array(record["cpu_ms"]["base"]), np.array(record["cpu_ms"]["this"])
    ratios = base / ours
    warm_up = record["warm_up"]
    q1, q3 = np.percentile(ratios, [25, 75])
    return "\n".join([
        "# SAC training-loop cost, this tree vs a base revision (issue 11)", "",
        (f"`python benchmarks/sac_loop_cost.py --base {record['base']} --rounds {record['rounds']} --warm-up "
         f"{warm_up}` — cheetah-run, bf16 update, utd 1, actor every step, timed after {warm_up:,} env steps of each: "
         f"{record['steps']} env steps (each with its gradient step) of each side per round, alternating order, CPU "
         "time of this process, torch and BLAS at 1 thread. Load at the "
         f"start: {record['load_start']}; at the end: {record['load_end']}."), "",
        "| code | CPU ms per env step (median, min-max) |", "|---|---:|",
        f"| base ({record['base']}) | {np.median(base):.2f} ({base.min():.2f}-{base.max():.2f}) |",
        f"| this tree | {np.median(ours):.2f} ({ours.min():.2f}-{ours.max():.2f}) |", "",
        (f"- paired speed-up base/this: median **{np.median(ratios):.3f}x** (IQR {q1:.3f}-{q3:.3f}, "
         f"{ratios.min():.2f}-{ratios.max():.2f}) over {len(ratios)} rounds"), ""])


def main() -> None:
    args = revision_args(__doc__, "c4fc838", 40, "rl_sac_loop_cost", f"{STEPS_PER_ROUND} env steps",
                         warm_up=LEARNING_STARTS + 4 * STEPS_PER_ROUND)
    torch.set_num_threads(1)
    trainers = {"base": embodia_trainer("bf16", module_at(args.base, "embodia/learn/sac.py")),
                "this": embodia_trainer("bf16", sac)}
    load_start = load_line()
    cpu_ms = paired_rounds(trainers, args.rounds, STEPS_PER_ROUND, args.warm_up)
    record = {"base": args.base, "rounds": args.rounds, "steps": STEPS_PER_ROUND, "warm_up": args.warm_up,
              "cpu_ms": cpu_ms, "load_start": load_start, "load_end": load_line(), "loadavg_end": list(os.getloadavg())}
    save_results(args.name, record, report(record))


if __name__ == "__main__":
    main()
