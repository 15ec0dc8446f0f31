"""Fixtures for the `charlm` command-line tests (helpers: cli_helpers.py).

Prefect's home and result storage are already in a temporary folder for every test folder
(tests/sandbox.py, imported by tests/conftest.py before Prefect), so commands that run tasks
outside a flow write nothing outside temporary folders either.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from cli_helpers import TINY, write_csv

from cli.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, str]:
    """A store with one dataset and one tiny model, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("cli")
    store = root / "store"
    csv = write_csv(root / "headlines.csv", 600, seed=1)
    assert main(["--storage", str(store), "ingest", str(csv)]) == 0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--storage", str(store), "train", *TINY]) == 0
    return {"store": str(store), "root": str(root), "printed": printed.getvalue()}
