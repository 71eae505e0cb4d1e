"""embodia SAC vs Stable-Baselines3 SAC at equal env steps on cheetah-run: env-steps/s and final return.

Both in this one process, one after the other, so the ratio shares the machine's load.
Usage: python benchmarks/sac_vs_sb3.py [--steps 20000] [--seeds 1]
"""

from __future__ import annotations

import argparse

import numpy as np

from ppo_vs_sb3 import RESULTS, compare, plot_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per training run")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per contender")
    parser.add_argument("--task", default="cheetah-run", help="embodia task or gym:<id>")
    args = parser.parse_args()
    results = compare(args.task, "sac", args.steps, args.seeds)
    RESULTS.mkdir(exist_ok=True)
    name = args.task.replace("gym:", "").replace("-", "_").lower()
    plot_curves(results, f"SAC on {args.task}, {args.steps:,} env steps", RESULTS / f"sac_{name}.png")
    ratio = np.mean([r["sps"] for r in results["embodia sac"]]) / np.mean([r["sps"] for r in results["SB3 sac"]])
    print(f"SAC speed ratio {ratio:.1f}x (target >= 2x)")


if __name__ == "__main__":
    main()
