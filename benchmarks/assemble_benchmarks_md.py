"""Assemble BENCHMARKS.md: the targets table (results/_targets.md) plus every per-area results file.

Usage: python benchmarks/assemble_benchmarks_md.py   (after updating a results file or results/_targets.md)
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
PARTS = [("Simulation: ceiling, EnvPool, Gymnasium (issues 2, 11)", "sim.md"), ("Scripted experts (issue 3)", "arm.md"), ("Data generation (issue 3)", "data.md"),
         ("Reinforcement learning (issue 4)", "rl.md"), ("PPO vs SB3 PPO (issue 11)", "rl_ppo.md"),
         ("PPO vs SB3 PPO, longer budget: 51,200 steps (issue 11)", "rl_ppo_51k.md"),
         ("PPO share of the simulation ceiling (issue 11)", "rl_ppo_ceiling.md"),
         ("PPO update cost, this tree vs a base revision (issue 11)", "rl_ppo_update_cost.md"),
         ("PPO loop cost, this tree vs a base revision (issue 11)", "rl_ppo_loop_cost.md"),
         ("SAC vs SB3 SAC (issue 11)", "rl_sac.md"),
         ("SAC loop cost, this tree vs a base revision (issue 11)", "rl_sac_loop_cost.md"),
         ("SAC loop cost later in training, this tree vs a base revision (issue 11)", "rl_sac_loop_cost_late.md"),
         ("Gymnasium MuJoCo suite (issues 10, 11)", "gymnasium_suite.md"),
         ("Gymnasium MuJoCo suite, longer budget: 51,200 steps (issue 11)", "gymnasium_suite_51k.md"),
         ("PPO automatic defaults vs variants at 51,200 steps, held-out seeds (issue 11)", "auto_config_variants.md"),
         ("Gymnasium suite, Ant-v5 speed after the leaner step (issue 11)", "gymnasium_suite_ant_speed.md"),
         ("Gymnasium suite, Ant-v5 with its physics on 2 threads (issue 11)", "gymnasium_suite_ant_threads.md"),
         ("Gymnasium envs stepped as one batch: Ant-v5 (issue 11)", "gym_vec_env_cost_ant.md"),
         ("Imitation learning (issue 4)", "il.md"),
         ("Evaluation (issue 5)", "eval.md"), ("Serving (issue 5)", "serve.md"),
         ("Platform: job queue and pipelines (issue 12)", "platform.md"),
         ("Bring your own robot (issue 10)", "byo_robot.md"),
         ("Physics backends (issue 15)", "backends.md"),
         ("REST API (issue 13)", "api.md"),
         ("Web console page loads (issue 13)", "console.md"),
         ("Teleoperation stream (issue 13)", "teleop.md"),
         ("Single-environment step cost (issue 11)", "single_env.md"),
         ("Ray executor (issue 14)", "ray.md"),
         ("Sharded generation on Ray (issue 14)", "sharded.md"),
         ("Placement over regions (issue 14)", "placement.md"),
         ("Start-up cost (issue 11)", "startup.md"),
         ("MuJoCo version cost (issue 11)", "mujoco_versions.md")]


def section(title: str, name: str) -> str:
    """One results file under a level-2 heading, its own headings pushed one level down."""
    lines = (ROOT / "results" / name).read_text().strip().splitlines()
    body = "\n".join("#" + line if line.startswith("#") else line for line in lines[1:])
    return f"## {title}\n\n_from `benchmarks/results/{name}`_\n{body}\n"


def main() -> None:
    text = (ROOT / "results" / "_targets.md").read_text() + "\n".join(section(title, name) for title, name in PARTS)
    (ROOT.parent / "BENCHMARKS.md").write_text(text)


if __name__ == "__main__":
    main()
