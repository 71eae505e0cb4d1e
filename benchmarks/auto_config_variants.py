"""Held-out seed sweep of PPO's automatic defaults against config variants (how auto_config's rules are chosen).

Every (task, seed, variant) run trains embodia PPO with the automatic defaults of `embodia/learn/auto_config.py`
under the variant's overrides (`{}` = the defaults as they are) and scores the deterministic return of 8
episodes (seed 12345) of Gymnasium's own env, the suite's evaluation. Seeds default to 5-9, held out from the
suite's 0-4, so a rule is chosen on seeds that the reported figures do not use. Returns only (no speed): runs go
to `--processes` worker processes at once, one thread each. The report gives per task and variant the mean with a
95 % t-interval, every seed, and the difference of means to the defaults.
Usage: python benchmarks/auto_config_variants.py --steps 51200 --variant '{"num_minibatches": 4}'
       [--tasks Hopper-v5,...] [--seeds 5,6,7,8,9] [--processes 2] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rl_baselines import RESULTS, fmt_ci, hand_written_reading, load_line

from embodia.core.atomic import atomic_write_text

TASKS = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "InvertedDoublePendulum-v5"]
HELD_OUT_SEEDS = [5, 6, 7, 8, 9]
DEFAULTS = "{}"
READING_MARK = "<!-- reading, written by hand; auto_config_variants.py keeps it -->"


def parse_variant(text: str) -> dict:
    """A variant's overrides from JSON (an object of PPO config fields); a clear error otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--variant {text!r}: not JSON ({error.msg}); expected e.g. '{{\"num_minibatches\": 4}}'")
    if not isinstance(value, dict):
        raise SystemExit(f"--variant {text!r}: expected a JSON object of PPO config fields, e.g. '{{\"update_epochs\": 4}}'")
    from pydantic import ValidationError

    from embodia.learn.ppo import PPOConfig

    try:  # names and ranges checked here, not after an hour of runs
        PPOConfig(**value)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"--variant {text!r}: {problems} (fields: {', '.join(PPOConfig.model_fields)})")
    return value


def run_one(task: str, seed: int, variant: str, steps: int) -> dict:
    """One training run (in a worker process, one thread) and its deterministic return."""
    os.environ["EMBODIA_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from rl_baselines import run_embodia

    result = run_embodia(f"gym:{task}", "ppo", steps, seed, overrides=json.loads(variant), eval_every=steps + 1)
    return {"task": task, "seed": seed, "variant": variant, "return": result["final_return"], "load": load_line()}


def report(runs: list[dict], steps: int) -> str:
    """Markdown: per task, each variant's mean ± 95 % interval, its seeds, and its mean minus the defaults'."""
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    lines = [f"| task | variant | return ({steps:,} steps) | per seed | minus defaults |", "|---|---|---:|---|---:|"]
    for task in tasks:
        base = [r["return"] for r in runs if r["task"] == task and r["variant"] == DEFAULTS]
        for variant in variants:
            ours = sorted((r["seed"], r["return"]) for r in runs if r["task"] == task and r["variant"] == variant)
            if not ours:
                continue
            values = [v for _, v in ours]
            delta = f"{sum(values) / len(values) - sum(base) / len(base):+.0f}" if base and variant != DEFAULTS else ""
            seeds = ", ".join(f"{s}: {v:.0f}" for s, v in ours)
            lines.append(f"| {task} | `{variant}` | {fmt_ci(values)} | {seeds} | {delta} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=51_200)
    parser.add_argument("--tasks", default=",".join(TASKS), help="Gymnasium ids, comma-separated")
    parser.add_argument("--seeds", default=",".join(map(str, HELD_OUT_SEEDS)), help="comma-separated")
    parser.add_argument("--variant", action="append", default=[],
                        help="JSON object of PPO overrides; repeatable; the defaults ({}) always run")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--markdown", type=Path, default=RESULTS / "auto_config_variants.md")
    args = parser.parse_args()
    if args.steps < 1 or args.processes < 1:
        raise SystemExit(f"--steps {args.steps} / --processes {args.processes}: expected 1 or more")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 5,6,7")
    variants = [DEFAULTS] + [json.dumps(parse_variant(v), sort_keys=True) for v in args.variant]
    jobs = [(task, seed, variant) for task in args.tasks.split(",") for seed in seeds for variant in variants]
    began = time.strftime("%Y-%m-%d %H:%M")
    runs = []
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch/MuJoCo state forked
    with ProcessPoolExecutor(args.processes, mp_context=context) as pool:
        futures = [pool.submit(run_one, task, seed, variant, args.steps) for task, seed, variant in jobs]
        for number, future in enumerate(futures, 1):
            run = future.result()
            runs.append(run)
            print(f"[{number}/{len(jobs)}] {run['task']} seed {run['seed']} {run['variant']}: "
                  f"return {run['return']:.1f} ({run['load']})", flush=True)
    table = report(runs, args.steps)
    text = (f"# PPO automatic defaults vs variants, held-out seeds\n\n"
            f"`python benchmarks/auto_config_variants.py --steps {args.steps} "
            + " ".join(f"--variant '{v}'" for v in variants[1:])
            + f"` ({began}, {args.processes} processes, {load_line()}). Deterministic return of 8 episodes "
            "(seed 12345) of Gymnasium's own env; mean ± 95 % t-interval over seeds.\n\n" + table + "\n\n"
            + READING_MARK + "\n" + hand_written_reading(args.markdown, READING_MARK))
    atomic_write_text(args.markdown, text)
    atomic_write_text(args.markdown.with_suffix(".json"), json.dumps({"steps": args.steps, "runs": runs}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
