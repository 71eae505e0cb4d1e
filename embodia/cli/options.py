"""Bounds shared by the CLI's options, so a bad number or path is refused while parsing, before any work.

Every numeric option declares `min=` and `max=` (Click reports a violation as one line naming the flag, exit 2;
a min and a max together also refuse NaN and infinity); paths declare whether they must exist and whether a
file or a directory is expected. `tests/cli/test_cli_fuzz.py` checks that every command follows this.
"""

from __future__ import annotations

from pathlib import Path

from embodia.core.errors import UserError

MAX_SEED = 2**32 - 1  # numpy, torch and Gymnasium all accept it
MAX_NUM_ENVS = 65_536  # BatchSim also refuses a batch that would not fit in memory
MAX_STEPS = 10**12  # env or gradient steps of one run
MAX_EPISODES = 1_000_000
MAX_THREADS = 1024
MAX_IMAGE_SIZE = 4096  # pixels per side of a rendered frame (embodia.sim.render.MAX_RENDER_SIZE)
MAX_PORT = 65_535
MAX_BATCH = 1_000_000  # observations in one policy-server request (embodia.serve.server.ServerConfig)
MAX_LIST = 100_000  # rows a listing command prints
MAX_ID = 2**63 - 1  # database ids (SQLite and PostgreSQL BIGINT)


def require_new_file(path: Path, flag: str) -> Path:
    """`path` for a file a command will write: its parent may not be a file; an existing directory is refused."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
            break
    return path


def require_output_dir(path: Path, flag: str) -> Path:
    """`path` for a directory a command will create or fill: an existing file there (or above it) is refused."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"is under {candidate}, which is a file"
                raise UserError(f"{flag} {path} {where}; give a directory path")
            break
    return path
