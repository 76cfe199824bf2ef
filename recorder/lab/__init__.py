"""The fault lab: a real Nginx stack (lb-01 in front of web-01 and web-02) that
reproduces the classic outages on demand and knows the truth of what it injected.

Two backends share one definition of each fault (`faults.py`) and one set of config
templates (`templates.py`): `local` (real nginx processes on 127.0.0.1 high ports, one
Debian-like directory per host) and `docker` (`docker/compose.yml`, driven through
`docker compose` and the recorder's docker host type).

Python API: `Lab(dir)` with `up()`, `down()`, `break_()`, `fix()`, `status()`,
`traffic()`, `config_path`, `hosts`, usable as a context manager; `run_traffic()`.
"""

from __future__ import annotations

from recorder.lab.core import Lab, http_status
from recorder.lab.faults import FAULTS, FaultDef, fault_table
from recorder.lab.state import LabError
from recorder.lab.traffic import run_traffic

__all__ = ["FAULTS", "FaultDef", "Lab", "LabError", "fault_table", "http_status", "run_traffic"]
