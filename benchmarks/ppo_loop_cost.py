"""PPO's whole training loop on cheetah-run (shipped config), this tree vs a git revision, paired in one process.

Trainer "base" runs the revision's `embodia/learn/ppo.py` (loaded from git as a second module, as
`ppo_update_cost.py` does) and, bound onto its own env objects, the revision's versions of the per-step env methods
named in `BASE_METHODS`; trainer "this" runs this tree. Each keeps its own copy of torch's RNG stream, so both
follow the same trajectory (MuJoCo's cost depends on the states) and must end with equal weights (checked: the
changes are meant to be bit for bit). Rounds alternate the order (base, this / this, base); each iteration (rollout
of 1,024 samples + update) is timed in CPU seconds of the process (all threads, MuJoCo's included) and of the main
thread alone. Reports medians and the median of paired base/this ratios, with the load average.
Usage: python benchmarks/ppo_loop_cost.py [--base REV] [--rounds 60]
"""

from __future__ import annotations

import ast
import os
import subprocess
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import torch
from _ceiling import alternating
from ppo_update_cost import module_at, new_trainer, revision_args
from rl_baselines import load_line, save_results
from threadpoolctl import threadpool_limits

import embodia.sim.batch as batch_module
import embodia.tasks.env as env_module
from embodia.learn import ppo

ROOT = Path(__file__).resolve().parent.parent
# (file, module whose globals the old method runs in, class, method): the env side of a PPO step
BASE_METHODS = [("embodia/sim/batch.py", batch_module, "BatchSim", "step"),
                ("embodia/sim/batch.py", batch_module, "BatchSim", "_diverged"),
                ("embodia/tasks/env.py", env_module, "BatchEnv", "_advance")]
PARTS = ("rollout, all threads", "rollout, main thread", "update")


def method_at(revision: str, path: str, module: types.ModuleType, cls: str, name: str) -> types.FunctionType:
    """`cls.name` as written in `path` at git `revision`, compiled against `module`'s current globals."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path}"], check=True, capture_output=True,
                            text=True).stdout
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    namespace = dict(vars(module))
                    exec(textwrap.dedent(ast.get_source_segment(source, item)), namespace)  # noqa: S102
                    return namespace[name]
    raise SystemExit(f"--base {revision}: {path} has no {cls}.{name}")


def trainers(revision: str) -> dict[str, object]:
    """Two PPOTrainers on cheetah-run, seed 0: the revision's code ("base") and this tree's ("this")."""
    made = {name: new_trainer(module) for name, module in (("base", module_at(revision)), ("this", ppo))}
    env = made["base"].env.env
    for path, module, cls, method in BASE_METHODS:
        owner = env.sim if cls == "BatchSim" else env
        setattr(owner, method, types.MethodType(method_at(revision, path, module, cls, method), owner))
    return made


def iteration_cpu(trainer) -> list[float]:
    """CPU milliseconds of one rollout (all threads, main thread) and its update."""
    cpu, main = time.process_time(), time.thread_time()
    trainer.collect_rollout()
    rollout_cpu, rollout_main = time.process_time(), time.thread_time()
    trainer.update()
    trainer.iteration += 1
    return [1000.0 * (rollout_cpu - cpu), 1000.0 * (rollout_main - main), 1000.0 * (time.process_time() - rollout_cpu)]


def paired_rounds(made: dict[str, object], rounds: int, warmup: int = 3) -> dict[str, list[list[float]]]:
    """Per contender, the CPU ms of each timed iteration; each contender on its own copy of torch's RNG stream."""
    names = list(made)
    rng = dict.fromkeys(names, torch.get_rng_state())
    cpu_ms: dict[str, list[list[float]]] = {name: [] for name in names}
    with threadpool_limits(limits=1, user_api="blas"):
        for round_index in range(-warmup, rounds):
            for name in alternating(names, round_index):
                torch.set_rng_state(rng[name])
                timed = iteration_cpu(made[name])
                rng[name] = torch.get_rng_state()
                if round_index >= 0:
                    cpu_ms[name].append(timed)
    return cpu_ms


def report(record: dict) -> str:
    """Markdown: median CPU ms per 1,024 samples of each part and side, paired base/this ratios, the loads."""
    base, ours = np.array(record["cpu_ms"]["base"]), np.array(record["cpu_ms"]["this"])
    scale = 1024 / record["batch_size"]
    rows = [(part, base[:, i], ours[:, i]) for i, part in enumerate(PARTS)]
    rows.append(("loop (rollout + update)", base[:, 0] + base[:, 2], ours[:, 0] + ours[:, 2]))
    lines = ["# PPO loop cost, this tree vs a base revision (issue 11)", "",
             (f"`python benchmarks/ppo_loop_cost.py --base {record['base']} --rounds {record['rounds']}` — one "
              f"iteration ({record['batch_size']:,} samples: rollout, then GAE and 8 epochs x 8 minibatches) of each "
              "side per round on cheetah-run (shipped config), alternating order, both on the same trajectory "
              "(their own copies of torch's RNG stream); CPU time of the process (MuJoCo's threads included) and "
              f"of the main thread. Weights equal at the end: **{record['same_weights']}**. Load at the start: "
              f"{record['load_start']}; at the end: {record['load_end']}."), "",
             "| part | base CPU ms per 1,024 samples (median) | this tree | paired base/this (median, IQR) |",
             "|---|---:|---:|---:|"]
    for part, a, b in rows:
        ratio = a / b
        lines.append(f"| {part} | {np.median(a) * scale:.1f} | {np.median(b) * scale:.1f} | "
                     f"{np.median(ratio):.3f}x ({np.percentile(ratio, 25):.3f}-{np.percentile(ratio, 75):.3f}) |")
    return "\n".join([*lines, ""])


def main() -> None:
    args = revision_args(__doc__, "e1c6c88", 60, "rl_ppo_loop_cost", "one iteration")
    torch.set_num_threads(1)
    made = trainers(args.base)
    load_start = load_line()
    cpu_ms = paired_rounds(made, args.rounds)
    same = bool(np.array_equal(made["base"].agent.flat.numpy(), made["this"].agent.flat.numpy()))
    record = {"base": args.base, "rounds": args.rounds, "batch_size": made["this"].batch_size, "cpu_ms": cpu_ms,
              "same_weights": same, "load_start": load_start, "load_end": load_line(),
              "loadavg_end": list(os.getloadavg())}
    save_results(args.name, record, report(record))


if __name__ == "__main__":
    main()
