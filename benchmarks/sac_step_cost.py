"""SAC env-steps per CPU-second at update-to-data 1, embodia (bf16 and fp32 update) vs SB3, paired in one process.

All three contenders live in one process past their 1,000 random warm-up steps; each round runs `--steps` env steps
of each (env step + one gradient step per env step, as their training loops do) back to back, so every pair sees the
same load. A cheaper, load-fair companion to `sac_vs_sb3.py` (which trains 5 seeds to compare returns).
Usage: python benchmarks/sac_step_cost.py [--steps 400] [--rounds 5] [--sb3-flush-denormals]
(--sb3-flush-denormals adds a second SB3 contender whose learning runs with denormals flushed to zero, as embodia's
update does: SB3 given the same process setting)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from types import ModuleType

import numpy as np
import torch
from rl_baselines import RESULTS, sb3_env, sb3_kwargs, zoo_hyperparams

from embodia.core.atomic import atomic_write_text
from embodia.learn import sac
from embodia.learn.nets import flush_denormals
from embodia.learn.sac import SACTrainer
from embodia.learn.vec_env import make_train_env

LEARNING_STARTS = 1000


def embodia_trainer(precision: str, module: ModuleType = sac) -> SACTrainer:
    """The benchmark's embodia settings (shipped cheetah-run defaults, utd 1, actor every step), built by `module`'s
    SACTrainer (this tree's, or a revision's loaded by `ppo_update_cost.module_at`)."""
    config = module.SACConfig(task="cheetah-run", seed=0, utd_ratio=1.0, policy_frequency=1,
                              learning_starts=LEARNING_STARTS, total_steps=10**9, progress=False, tensorboard=False,
                              precision=precision)
    return module.SACTrainer(config, make_train_env("cheetah-run", config.num_envs, 0))


def run_embodia(trainer: SACTrainer, steps: int) -> None:
    """`steps` env steps of `SACTrainer.learn`'s loop (without its logging)."""
    target = trainer.global_step + steps
    while trainer.global_step < target:
        trainer.env_step()
        if trainer.global_step >= trainer.config.learning_starts:
            trainer.update_credit += trainer.config.utd_ratio * trainer.env.num_envs
            while trainer.update_credit >= 1.0:
                trainer.update()
                trainer.update_credit -= 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="env steps per contender per round")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds")
    parser.add_argument("--sb3-flush-denormals", action="store_true",
                        help="also time a second SB3 model whose learning runs with denormals flushed to zero")
    args = parser.parse_args()
    import stable_baselines3 as sb3
    from stable_baselines3.common.env_util import make_vec_env

    trainers = {"bf16": embodia_trainer("bf16"), "fp32": embodia_trainer("fp32")}
    _, zoo = zoo_hyperparams("sac", "HalfCheetah-v5")
    n_envs, _, kwargs = sb3_kwargs({**zoo, "learning_starts": LEARNING_STARTS})

    def sb3_model() -> sb3.SAC:
        venv = make_vec_env(lambda: sb3_env("gym:HalfCheetah-v5"), n_envs=n_envs, seed=0)
        return sb3.SAC("MlpPolicy", venv, seed=0, verbose=0, device="cpu", **kwargs)

    model = sb3_model()
    torch.set_num_threads(1)
    contenders = {"embodia bf16": lambda k: run_embodia(trainers["bf16"], k),
                  "SB3": lambda k: model.learn(k, reset_num_timesteps=False),
                  "embodia fp32": lambda k: run_embodia(trainers["fp32"], k)}
    if args.sb3_flush_denormals:
        flushed = sb3_model()

        def learn_flushed(k: int) -> None:
            with flush_denormals():
                flushed.learn(k, reset_num_timesteps=False)

        contenders["SB3 denormals flushed"] = learn_flushed
    for run in contenders.values():
        run(LEARNING_STARTS + 200)  # all past warm-up and learning
    cpu_sps: dict[str, list[float]] = {name: [] for name in contenders}
    loads = []
    for round_index in range(args.rounds):
        for name, run in contenders.items():
            began = time.process_time()
            run(args.steps)
            cpu_sps[name].append(args.steps / (time.process_time() - began))
        loads.append(os.getloadavg()[0])
        print(round_index, {k: round(v[-1], 1) for k, v in cpu_sps.items()}, f"load {loads[-1]:.1f}", flush=True)
    ratios = {name: np.array(cpu_sps[name]) / np.array(cpu_sps["SB3"]) for name in contenders if name != "SB3"}
    for name, ratio in ratios.items():
        print(f"{name}: {np.median(ratio):.2f}x SB3 per CPU-second (paired median, {ratio.min():.2f}-{ratio.max():.2f})")
    if args.sb3_flush_denormals:
        ratio = np.array(cpu_sps["embodia bf16"]) / np.array(cpu_sps["SB3 denormals flushed"])
        print(f"embodia bf16: {np.median(ratio):.2f}x SB3 with denormals flushed ({ratio.min():.2f}-{ratio.max():.2f})")
    atomic_write_text(RESULTS / "rl_sac_step_cost.json", json.dumps({"steps": args.steps, "cpu_sps": cpu_sps,
                                                                      "load_1min": loads}))


if __name__ == "__main__":
    main()
