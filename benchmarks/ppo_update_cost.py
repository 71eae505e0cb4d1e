"""PPO update cost per 1,024 samples on cheetah-run (shipped config), this tree vs a git revision, paired in one process.

The base revision's `embodia/learn/ppo.py` is loaded from git as a second module; both trainers collect a rollout
from the same seed, then each round runs one update (GAE, 8 epochs x 8 minibatches of 128, Adam) of each, in
alternating order, timed in CPU seconds (`time.process_time`), so every pair shares one stretch of machine load.
Every 4th round collects a fresh rollout first (outside the timing), as training would. Reports the median of the
paired base/this ratios and the load average. Companion to `ppo_vs_sb3.py --ceiling-only` (the whole loop's share).
Usage: python benchmarks/ppo_update_cost.py [--base REV] [--rounds 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from _ceiling import alternating
from rl_baselines import load_line, save_results
from threadpoolctl import threadpool_limits

from embodia.learn import ppo
from embodia.learn.trainer import load_config
from embodia.learn.vec_env import make_train_env

ROOT = Path(__file__).resolve().parent.parent
TASK = "cheetah-run"


def module_at(revision: str, path: str = "embodia/learn/ppo.py") -> ModuleType:
    """The file `path` (a module of embodia) as of git `revision`, imported as a separate module; its own imports of
    embodia resolve to this tree."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path}"], check=True,
                                capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"--base {revision!r}: git cannot show {path} there ({error.stderr.strip()}); "
                         "pass a commit of this repository") from error
    stem = Path(path).stem
    module_path = Path(tempfile.mkdtemp()) / f"{stem}_{revision.replace('/', '_')}.py"
    module_path.write_text(source)
    spec = importlib.util.spec_from_file_location(module_path.stem, module_path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_path.stem] = module
    spec.loader.exec_module(module)
    return module


def new_trainer(module: ModuleType):
    """A `PPOTrainer` of `module` on cheetah-run with the shipped config, seed 0."""
    config = load_config(TASK, "ppo", None, {"progress": False, "tensorboard": False}, total_steps=10**6, seed=0)
    return module.PPOTrainer(config, make_train_env(TASK, config.num_envs, config.seed))


def trainer_from(module: ModuleType):
    """`new_trainer(module)` built after seeding torch's global RNG with 0, after one rollout."""
    torch.manual_seed(0)
    trainer = new_trainer(module)
    trainer.collect_rollout()
    return trainer


def revision_args(doc: str, base: str, rounds: int, name: str, per_round: str,
                  warm_up: int | None = None) -> argparse.Namespace:
    """The command line of a this-tree-vs-revision benchmark: --base, --rounds (checked >= 1), --name, and
    --warm-up (steps before timing, checked >= 0) where `warm_up` gives its default."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--base", default=base, help="git revision whose code is the baseline")
    parser.add_argument("--rounds", type=int, default=rounds,
                        help=f"paired rounds ({per_round} of each side per round)")
    parser.add_argument("--name", default=name, help="results file names under benchmarks/results")
    if warm_up is not None:
        parser.add_argument("--warm-up", type=int, default=warm_up, help="env steps each side runs before timing")
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds {args.rounds}: give at least 1")
    if getattr(args, "warm_up", 0) < 0:
        raise SystemExit(f"--warm-up {args.warm_up}: give 0 or more env steps")
    return args


def paired_rounds(trainers: dict[str, object], rounds: int) -> dict[str, list[float]]:
    """CPU milliseconds of one update per contender per round, the order alternating round by round."""
    names = list(trainers)
    cpu_ms: dict[str, list[float]] = {name: [] for name in names}
    with threadpool_limits(limits=1, user_api="blas"):
        for trainer in trainers.values():  # warm-up: workspaces, caches
            trainer.update()
        for round_index in range(rounds):
            for name in alternating(names, round_index):
                trainer = trainers[name]
                if round_index % 4 == 3:
                    trainer.collect_rollout()
                start = time.process_time()
                trainer.update()
                cpu_ms[name].append(1000.0 * (time.process_time() - start))
    return cpu_ms


def report(record: dict) -> str:
    """Markdown: median CPU ms per update of each side, the paired ratio (median, min-max), the loads."""
    base, ours = np.array(record["cpu_ms"]["base"]), np.array(record["cpu_ms"]["this"])
    ratios = base / ours
    samples = record["batch_size"]
    per_1024 = 1024 / samples
    return "\n".join([
        "# PPO update cost, this tree vs a base revision (issue 11)", "",
        (f"`python benchmarks/ppo_update_cost.py --base {record['base']} --rounds {record['rounds']}` — one update "
         f"({samples:,} samples: GAE, 8 epochs x 8 minibatches of 128, Adam) of each side per round on cheetah-run "
         "(shipped config), alternating order, CPU time of this process, BLAS and torch at 1 thread. "
         f"Load at the start: {record['load_start']}; at the end: {record['load_end']}."), "",
        "| code | update CPU ms per 1,024 samples (median, min-max) |", "|---|---:|",
        f"| base ({record['base']}) | {np.median(base) * per_1024:.1f} ({base.min() * per_1024:.1f}-{base.max() * per_1024:.1f}) |",
        f"| this tree | {np.median(ours) * per_1024:.1f} ({ours.min() * per_1024:.1f}-{ours.max() * per_1024:.1f}) |", "",
        (f"- paired speed-up base/this: median **{np.median(ratios):.2f}x** "
         f"({ratios.min():.2f}-{ratios.max():.2f}) over {len(ratios)} rounds"), ""])


def main() -> None:
    args = revision_args(__doc__, "325ebb0", 30, "rl_ppo_update_cost", "one update")
    torch.set_num_threads(1)
    trainers = {"base": trainer_from(module_at(args.base)), "this": trainer_from(ppo)}
    load_start = load_line()
    cpu_ms = paired_rounds(trainers, args.rounds)
    record = {"base": args.base, "rounds": args.rounds, "batch_size": trainers["this"].batch_size, "cpu_ms": cpu_ms,
              "load_start": load_start, "load_end": load_line(), "loadavg_end": list(os.getloadavg())}
    save_results(args.name, record, report(record))


if __name__ == "__main__":
    main()
