"""The example task through Gymnasium: importing task.py registers `YourRobot/Reach-v0` (single and vector).

Run from anywhere: `python examples/your_robot/gym_demo.py`.
"""

import sys
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parent))
import task  # noqa: E402,F401  (registers the task and its Gymnasium IDs)

env = gym.make("YourRobot/Reach-v0")
obs, info = env.reset(seed=0)
total, steps, done = 0.0, 0, False
while not done:
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    total, steps, done = total + reward, steps + 1, terminated or truncated
print(f"single env: {steps} steps, return {total:.1f}, obs {obs.shape}")

envs = gym.make_vec("YourRobot/Reach-v0", num_envs=8, vectorization_mode="vector_entry_point")
obs, info = envs.reset(seed=0)
obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
print(f"vector env: obs {obs.shape}, reward {reward.shape}")
envs.close()
