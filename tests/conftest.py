"""Suite-wide set-up, and fixtures more than one test package uses.

The project root goes on sys.path: `pytest` alone (unlike `python -m pytest`) does not put
it there, and `benchmarks/` is not an installed package.

`sandbox` (tests/sandbox.py) comes first: it points Prefect's home and result storage at a
temporary folder, which Prefect reads when it is imported.

Prefect configures logging with logging.config.dictConfig on its first import, and
dictConfig shuts down every handler that exists at that moment, pytest's per-test
log-capture handlers included; a test that imports Prefect for the first time then breaks
pytest's capture ("I/O operation on closed file"). Importing it here, at collection,
before any test runs, keeps that from depending on test order.
"""

import sys
from pathlib import Path

import sandbox  # noqa: F401  (tests/sandbox.py; before Prefect is imported, below)

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import prefect.main  # noqa: E402, F401  (runs prefect.logging.configuration.setup_logging)
import pytest  # noqa: E402
from feedserver import FeedServer  # noqa: E402  (tests/feedserver.py)
from s3server import S3Server  # noqa: E402  (tests/s3server.py)


@pytest.fixture
def feed_server():
    """A feed server on 127.0.0.1 (tests/feedserver.py), stopped at teardown."""
    server = FeedServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def csv_file():
    """csv_file(directory, name, body, header=...) -> Path of a new headline CSV."""

    def write(directory, name: str, body: bytes,
              header: bytes = b"publish_date,headline_text\n"):
        path = directory / name
        path.write_bytes(header + body)
        return path

    return write


@pytest.fixture
def publish_model():
    """publish_model(storage, dataset_id, champion=True, seed=0) -> id of a new, untrained
    tiny GRU published as if trained on `dataset_id` (and made the champion): scoring needs
    a model, not a good one, and building one takes a fraction of a second."""

    def publish(storage: str, dataset_id: str, champion: bool = True, seed: int = 0) -> str:
        from charlm.config import ModelConfig
        from charlm.model import build_model, save_model
        from storage import Store
        from storage.layout import ModelFiles

        config = ModelConfig(cell="gru", hidden=8, depth=1, embedding=4, dropout=0.0,
                             seed=seed)
        store = Store(storage)
        with store.publish("models", parents={"datasets": [dataset_id]}, seed=seed) as staging:
            save_model(build_model(config, precision="float32"), config,
                       ModelFiles.at(staging.path), extra={"dataset": dataset_id})
        if champion:
            store.set_alias("models", "champion", staging.id, reason="test fixture")
        return staging.id

    return publish


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server on 127.0.0.1 for the session (tests/s3server.py); tests take a
    fresh bucket each (`s3_store_url`). Skipped when moto is not installed."""
    pytest.importorskip("moto.server")
    server = S3Server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_store_url(s3_server, monkeypatch, tmp_path):
    """The URL of a store in a new bucket of `s3_server`, with AWS_* and the cache set."""
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    return s3_server.bucket()
