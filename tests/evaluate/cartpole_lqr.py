"""A hand-written LQR balance controller for cartpole, from the linearized MuJoCo model (test fixture policy)."""

from __future__ import annotations

import functools

import mujoco
import numpy as np
from scipy.linalg import solve_discrete_are

from embodia.tasks.registry import make_task


@functools.lru_cache(maxsize=1)
def lqr_gain() -> np.ndarray:
    """(1, 4) state-feedback gain on [x, theta, x_dot, theta_dot] around the upright pole."""
    task = make_task("cartpole-balance")
    model = task.build_model()
    model.opt.timestep *= task.config.frame_skip  # one control step
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_EULER  # transitionFD does not support RK4
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    nx = 2 * model.nv
    A, B = np.zeros((nx, nx)), np.zeros((nx, model.nu))
    mujoco.mjd_transitionFD(model, data, 1e-6, True, A, B, None, None)
    Q, R = np.diag([1.0, 10.0, 0.1, 0.1]), np.eye(model.nu) * 0.1
    P = solve_discrete_are(A, B, Q, R)
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)


def act(obs: np.ndarray) -> np.ndarray:
    """Balance action batch (B, 1) from cartpole observations (B, 5)."""
    theta = np.arctan2(obs[:, 2], obs[:, 1])
    state = np.stack([obs[:, 0], theta, obs[:, 3], obs[:, 4]], axis=1)
    return np.clip(-state @ lqr_gain().T, -1.0, 1.0)
