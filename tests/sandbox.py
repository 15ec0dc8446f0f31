"""The test session's environment, set before anything imports Prefect or TensorFlow.

Prefect's home (profiles, its database, telemetry) and its result storage go to a temporary
folder removed at exit, so no test writes outside temporary folders, whichever test folder
runs. Prefect reads these when it is first imported: `tests/conftest.py` imports this module
before Prefect; the flow tests' Prefect server (`tests/flows/conftest.py`) also points its
temporary settings at `PREFECT_TMP`. Child processes inherit the environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

PREFECT_TMP = Path(tempfile.mkdtemp(prefix="charlm-tests-"))
atexit.register(shutil.rmtree, PREFECT_TMP, True)
os.environ["PREFECT_HOME"] = str(PREFECT_TMP / "home")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(PREFECT_TMP / "results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# charlm's fused CPU kernels are compiled once per test session, into the same folder
# (charlm/kernels.py); child processes inherit it and reuse the build.
os.environ["CHARLM_KERNEL_DIR"] = str(PREFECT_TMP / "kernels")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
