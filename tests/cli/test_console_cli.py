"""`embodia console start|stop` (what `make demo` ends with): a detached `embodia server` on 127.0.0.1 whose
printed one-time URL signs in once; stop ends it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def _embodia(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "EMBODIA_HOME": str(home)}
    env.pop("EMBODIA_DB_URL", None)
    return subprocess.run([sys.executable, "-m", "embodia", *args], capture_output=True, text=True, env=env,
                          timeout=180, check=False)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _status(url: str) -> int:
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def test_console_start_prints_a_one_time_url_and_stop_ends_the_server(tmp_path):
    home = tmp_path / "ws"
    started = _embodia(home, "console", "start", "--port", "0")
    assert started.returncode == 0, started.stderr
    url = re.search(r"console: (http://127\.0\.0\.1:\d+/console/login\?once=\S+)", started.stdout).group(1)
    assert f"xdg-open '{url}'" in started.stdout
    pid = json.loads((home / "console" / "server.json").read_text())["pid"]
    try:
        assert (home / "console" / "server.log").stat().st_mode & 0o077 == 0  # the log holds the link
        assert _status(url) == 303  # signs in (redirect to the console)
        assert _status(url) == 401  # and is void from then on
    finally:
        stopped = _embodia(home, "console", "stop")
    assert stopped.returncode == 0 and f"pid {pid}" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1]
    assert "no console server" in _embodia(home, "console", "stop").stdout


@pytest.mark.parametrize("args", [["console", "start", "--port", "70000"]])
def test_console_start_bad_port_is_a_usage_error(tmp_path, args):
    answer = _embodia(tmp_path / "ws", *args)
    assert answer.returncode == 2 and "Traceback" not in answer.stderr
