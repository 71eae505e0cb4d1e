"""Load MuJoCo models from MJCF files or strings, with errors that name the file, line and fix."""

from __future__ import annotations

import re
from pathlib import Path

import mujoco

ASSET_DIR = Path(__file__).resolve().parent.parent / "tasks" / "assets"


class ModelLoadError(ValueError):
    """An MJCF model could not be loaded; the message names the source, line and problem."""


def _describe_mujoco_error(source: str, error: Exception) -> str:
    text = str(error).strip()
    line = re.search(r"[Ll]ine\s*=?\s*(\d+)", text)
    where = f"{source}, line {line.group(1)}" if line else source
    first = text.splitlines()[0] if text else type(error).__name__
    return f"cannot load MJCF model {where}: {first} (fix the MJCF and try again; full MuJoCo message: {text!r})"


def load_model(source: str | Path) -> mujoco.MjModel:
    """Load an MjModel from an MJCF path, a bundled asset name (e.g. 'arm.xml') or an XML string."""
    if isinstance(source, str) and source.lstrip().startswith("<"):
        try:
            return mujoco.MjModel.from_xml_string(source)
        except Exception as error:  # MuJoCo raises ValueError with a parser message
            raise ModelLoadError(_describe_mujoco_error("<xml string>", error)) from None
    path = Path(source)
    if not path.is_absolute() and not path.exists() and (ASSET_DIR / path).exists():
        path = ASSET_DIR / path
    if not path.exists():
        raise ModelLoadError(f"MJCF file not found: {path} (give a path to an existing .xml file or a bundled asset name)")
    if path.is_dir():
        raise ModelLoadError(f"MJCF path is a directory, not a file: {path} (point at the .xml file inside it)")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except Exception as error:
        raise ModelLoadError(_describe_mujoco_error(str(path), error)) from None
