"""Uploaded MJCF robots: file references kept inside the upload, then compiled by MuJoCo in a child process
with CPU-time, memory and wall-clock limits (a hostile model can hang or exhaust only that child)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

from embodia.core.errors import UserError

COMPILE_TIMEOUT_S = 60
COMPILE_CPU_S = 30
COMPILE_MEMORY = 2 << 30
PATH_ATTRIBUTES = ("file", "meshdir", "texturedir", "assetdir")
_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
resource.setrlimit(resource.RLIMIT_AS, ({mem}, {mem}))
from embodia.core.errors import UserError
from embodia.sim.assets import load_model
try:
    model = load_model(sys.argv[1])
except UserError as error:
    print(json.dumps({{"error": str(error)}})); sys.exit(2)
print(json.dumps({{"nq": model.nq, "nv": model.nv, "nu": model.nu, "nbody": model.nbody}}))
"""


def find_mjcf(root: Path) -> Path:
    """The upload's one top-level .xml file (the robot); its includes and meshes sit next to it."""
    found = sorted(root.glob("*.xml"))
    if len(found) != 1:
        raise UserError(f"a robot upload holds exactly one top-level .xml file (found {len(found)}); "
                        "put included files and meshes in sub-folders")
    return found[0]


def check_references(root: Path) -> None:
    """Every file an MJCF of the upload names is a relative path that stays inside it."""
    for xml in root.rglob("*.xml"):
        try:
            tree = ET.parse(xml)
        except ET.ParseError as error:
            raise UserError(f"{xml.relative_to(root)}: not valid XML ({error})") from None
        for element in tree.iter():
            for name in PATH_ATTRIBUTES:
                value = element.get(name)
                if value is None:
                    continue
                path = PurePosixPath(value.replace("\\", "/"))
                if path.is_absolute() or ".." in path.parts or ":" in value:
                    raise UserError(f"{xml.relative_to(root)}: <{element.tag} {name}={value!r}> points outside the "
                                    "upload; use paths relative to the model inside the archive")


def compile_mjcf(path: Path) -> dict[str, int]:
    """Compile `path` with MuJoCo in a limited child process; its sizes, or a UserError with MuJoCo's message."""
    code = _CHILD.format(cpu=COMPILE_CPU_S, mem=COMPILE_MEMORY)
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                              timeout=COMPILE_TIMEOUT_S, cwd=path.parent)
    except subprocess.TimeoutExpired:
        raise UserError(f"the robot model did not compile within {COMPILE_TIMEOUT_S} s") from None
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    if done.returncode == 2 and result:
        raise UserError(result["error"])
    if done.returncode != 0 or result is None:
        raise UserError(f"the robot model could not be compiled (the compiler exited with {done.returncode}: "
                        "over its CPU or memory limit, or crashed)")
    return result
