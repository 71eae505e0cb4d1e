"""`embodia --help` lists every command and stays cheap: plain Click help, no Rich markdown/traceback, no torch."""

import subprocess
import sys

import typer

from embodia.cli import app

HELP_PROBE = """
import sys
from embodia.cli import app
try:
    app(["--help"])
except SystemExit:
    pass
print("MODULES", " ".join(sys.modules))
"""


def test_help_lists_every_command_and_imports_no_heavy_module():
    done = subprocess.run([sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, timeout=300, check=True)
    help_text, _, modules = done.stdout.partition("MODULES")
    for name in typer.main.get_command(app).commands:
        assert f"  {name} " in help_text, name
    assert not {"typer.rich_utils", "rich.markdown", "rich.traceback", "torch", "numpy", "urllib.request",
                "pydantic"} & set(modules.split())
