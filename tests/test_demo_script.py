"""The README's demo, run for real: it opens and resolves an incident, prints the message
the lab's webhook sink received for it, and leaves no process behind (each process that
mentions the demo's lab directory is looked up by pid in /proc after the script exits).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.sh"

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line or working directory holds `text`, by pid."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if text in cmdline or cwd.startswith(text):
            found[int(entry.name)] = cmdline.strip()
    return found


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "recorder").exists(), reason="needs setup.sh")
def test_demo_opens_an_incident_and_leaves_no_process(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    env = dict(os.environ, DEMO_LAB_DIR=str(lab), DEMO_SETUP="0", DEMO_WAIT="60")
    try:
        result = subprocess.run(
            ["bash", str(DEMO)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "recorder draft" in result.stdout
        page = r"in a browser, .*: http://127\.0\.0\.1:\d+/incidents/\d+\n"
        assert re.search(page, result.stdout), result.stdout[-3000:]
        # The lab's webhook sink got the incident's opening, signature verified.
        incident = re.search(r"/incidents/(\d+)\n", result.stdout)
        assert incident, result.stdout[-3000:]
        received = (
            r"webhook sink received .*\n"
            r".*  opened  delivery [0-9a-f-]{36}  \(signature verified\)\n"
        )
        assert re.search(received, result.stdout), result.stdout[-3000:]
        kept = [
            json.loads(line) for line in (lab / "notify/messages.jsonl").read_text().splitlines()
        ]
        mine = [m["event"] for m in kept if m["body"]["incident"]["id"] == int(incident[1])]
        assert mine[0] == "opened" and "resolved" in mine, mine
        assert "# Postmortem" in result.stdout or "Postmortem" in result.stdout
        left = processes_mentioning(str(lab))
        assert left == {}, f"the demo left processes running: {left}"
        # Not at a terminal it says it stops at once, and how to read its incidents again;
        # that command works with everything stopped.
        assert "not at a terminal: stopping" in result.stdout, result.stdout[-3000:]
        again = re.search(r"demo: its incidents, again: (.*)\n", result.stdout)
        assert again, result.stdout[-3000:]
        listed = subprocess.run(
            again[1].split(), cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        )
        assert f"INC-{incident[1]} " in listed.stdout, listed.stdout
    finally:
        # A failed run must not leak into the rest of the suite: stop what it left, by pid.
        for pid in processes_mentioning(str(lab)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if lab.exists():
            subprocess.run(
                [str(ROOT / ".venv" / "bin" / "recorder"), "lab", "down", "--dir", str(lab)],
                cwd=ROOT,
                capture_output=True,
                timeout=60,
            )
