"""GL backend choice: MuJoCo imported before embodia with MUJOCO_GL unset still renders, or says why not."""

import os
import subprocess
import sys
import types

from embodia.sim import render


def test_mujoco_imported_first_without_mujoco_gl_still_renders():
    code = ("import mujoco, embodia\nfrom embodia.tasks import BatchEnv\n"
            "env = BatchEnv('cartpole-swingup'); env.reset(seed=0)\n"
            "print('mean', env.render([0], width=16, height=16).mean())")
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split("mean")[1]) > 0


def test_wrong_import_order_message_says_what_happened_and_the_fix(monkeypatch):
    fake = types.ModuleType("mujoco.rendering.classic.gl_context")
    fake._MUJOCO_GL = ""
    fake.GLContext = type("GLContext", (), {"__module__": "mujoco.glfw"})
    monkeypatch.setitem(sys.modules, "mujoco.rendering.classic.gl_context", fake)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    hint = render.gl_failure_hint()
    assert "mujoco was imported before embodia with MUJOCO_GL unset" in hint
    assert "MUJOCO_GL=egl" in hint and "import embodia` before `import mujoco`" in hint


def test_no_mismatch_gives_the_package_hint(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    fake = types.ModuleType("mujoco.rendering.classic.gl_context")
    fake._MUJOCO_GL = "egl"
    monkeypatch.setitem(sys.modules, "mujoco.rendering.classic.gl_context", fake)
    monkeypatch.delitem(sys.modules, "mujoco.gl_context", raising=False)
    assert "libegl1" in render.gl_failure_hint()
