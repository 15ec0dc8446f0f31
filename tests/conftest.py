"""Suite-wide set-up.

Prefect configures logging with logging.config.dictConfig on its first import, and
dictConfig shuts down every handler that exists at that moment, pytest's per-test
log-capture handlers included; a test that imports Prefect for the first time then breaks
pytest's capture ("I/O operation on closed file"). Importing it here, at collection,
before any test runs, keeps that from depending on test order.
"""

import prefect.main  # noqa: F401  (runs prefect.logging.configuration.setup_logging)
