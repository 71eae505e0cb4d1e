"""Shared fixtures: small batches of real tasks."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import embodia  # noqa: E402,F401  (registers Gymnasium ids, picks the GL backend)
