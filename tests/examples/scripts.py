"""What the example tests share: running an example as a script, and reading a fake's JSON.

Test modules in this folder import it as ``from scripts import ...`` (pytest puts a test
module's folder on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<name>`` as its user would, from the repository's root."""
    paths = [str(ROOT), str(EXAMPLES), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, object]]:
    """GET a fake service's JSON: (status, body), for error statuses too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
