"""Which OpenGL backend MuJoCo renders with (EGL, OSMesa, GLFW), chosen before MuJoCo's renderer is imported.

Kept apart from `render` (and free of NumPy) because `import embodia` runs `configure_gl`: commands that never
render, `embodia --help` among them, should not pay for NumPy or MuJoCo.
"""

from __future__ import annotations

import ctypes.util
import importlib
import os
import sys


def choose_gl_backend() -> str:
    """Pick MuJoCo's GL backend: EMBODIA_GL / MUJOCO_GL if set, else EGL when libEGL exists, else OSMesa."""
    chosen = os.environ.get("EMBODIA_GL") or os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if os.environ.get("DISPLAY"):
        return "glfw"
    return "egl" if has_egl() else "osmesa"


# where distributions put libEGL; looking there first spares `import embodia` find_library's ldconfig run (~0.1 s)
_LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib64",
                 "/lib/x86_64-linux-gnu", "/usr/local/lib")


def has_egl() -> bool:
    """Whether libEGL can be loaded: a look in the usual library folders, else the dynamic loader's search."""
    if any(os.path.exists(os.path.join(folder, "libEGL.so.1")) for folder in _LIBRARY_DIRS):
        return True
    return ctypes.util.find_library("EGL") is not None


def configure_gl() -> str:
    """Set MUJOCO_GL before mujoco's renderer is imported; returns the backend in use.

    When MuJoCo was imported first with MUJOCO_GL unset it has picked GLFW, which needs a display; on a headless
    machine its GL context is switched to the chosen backend here (possible while PyOpenGL is not yet loaded).
    """
    backend = choose_gl_backend()
    os.environ["MUJOCO_GL"] = backend
    if backend in ("osmesa", "egl"):
        os.environ["PYOPENGL_PLATFORM"] = backend  # PyOpenGL must agree with MuJoCo's context
    _adopt_early_mujoco_import(backend)
    return backend


def _mujoco_gl_modules() -> list:
    """MuJoCo's already imported gl_context modules (3.x: mujoco.gl_context; 4.x: rendering.classic too)."""
    names = ("mujoco.rendering.classic.gl_context", "mujoco.gl_context")
    return [sys.modules[name] for name in names if name in sys.modules]


def mujoco_gl_mismatch() -> str | None:
    """The backend MuJoCo chose at its import if it differs from MUJOCO_GL now (it was imported too early)."""
    wanted = os.environ.get("MUJOCO_GL", "")
    for module in _mujoco_gl_modules():
        chosen = getattr(module, "_MUJOCO_GL", wanted)
        context = getattr(module, "GLContext", None)
        if chosen != wanted and not (context is not None and wanted in context.__module__):
            return chosen or "glfw (MUJOCO_GL unset)"
    return None


def _adopt_early_mujoco_import(backend: str) -> None:
    if backend not in ("egl", "osmesa") or mujoco_gl_mismatch() is None:
        return
    platform = os.environ.get("PYOPENGL_PLATFORM")
    if "OpenGL" in sys.modules and platform not in (None, backend):
        return  # PyOpenGL is bound to another platform; the render error explains the fix
    try:
        context = importlib.import_module(f"mujoco.{backend}").GLContext
    except Exception:  # a missing library: the render error names it when rendering is asked for
        return
    for module in _mujoco_gl_modules():
        module.GLContext = context


def gl_failure_hint() -> str:
    """What to do when no GL context opens: the import-order fix when that is the cause, else the packages."""
    early = mujoco_gl_mismatch()
    if early is not None:
        return (f"mujoco was imported before embodia with MUJOCO_GL unset, so MuJoCo picked {early} for rendering "
                f"and embodia could not switch it to {os.environ.get('MUJOCO_GL')!r}. Fix: run with "
                "MUJOCO_GL=egl (or osmesa) in the environment, or `import embodia` before `import mujoco`.")
    return ("Install the Debian packages libegl1 and libosmesa6 (or set EMBODIA_GL=egl|osmesa); "
            "on a machine with a display MUJOCO_GL=glfw works too.")
