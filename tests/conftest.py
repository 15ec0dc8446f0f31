"""Suite-wide set-up.

Prefect configures logging with logging.config.dictConfig on its first import, and
dictConfig shuts down every handler that exists at that moment, pytest's per-test
log-capture handlers included; a test that imports Prefect for the first time then breaks
pytest's capture ("I/O operation on closed file"). Importing it here, at collection,
before any test runs, keeps that from depending on test order.
"""

import prefect.main  # noqa: F401  (runs prefect.logging.configuration.setup_logging)
import pytest


@pytest.fixture
def csv_file():
    """csv_file(directory, name, body, header=...) -> Path of a new headline CSV."""

    def write(directory, name: str, body: bytes,
              header: bytes = b"publish_date,headline_text\n"):
        path = directory / name
        path.write_bytes(header + body)
        return path

    return write
