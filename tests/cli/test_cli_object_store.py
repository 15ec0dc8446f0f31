"""The `charlm` commands on an S3 store (moto's server on 127.0.0.1, tests/s3server.py):
the main job end to end, the demo through $CHARLM_STORAGE, and the one-line errors for a
bad store URL, a missing bucket and an endpoint that is down or dies mid-upload."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import TINY, assert_runtime_error, last_line, run, write_csv
from s3server import CuttingProxy, S3Server, free_port

from storage import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_main_job_end_to_end_on_s3(capsys, s3_store_url, tmp_path):
    url = s3_store_url
    csv = write_csv(tmp_path / "headlines.csv", 600, seed=1)
    code, _, err = run(capsys, url, "ingest", str(csv))
    assert code == 0, err
    code, out, err = run(capsys, url, "train", *TINY)
    assert code == 0, err
    store = Store(url)
    model = store.resolve("models", "latest")
    assert store.resolve("models", "champion") == model  # the first model is champion
    assert store.alias_history("models", "champion")[-1]["id"] == model
    code, out, err = run(capsys, url, "evaluate", "champion")
    assert code == 0, err
    assert "bits_per_char" in out
    code, out, err = run(capsys, url, "drift")
    assert code == 0, err
    code, out, err = run(capsys, url, "generate", "champion", "-n", "5")
    assert code == 0, err
    assert len(Path(last_line(out)).read_text().splitlines()) == 5
    code, out, err = run(capsys, url, "versions")
    assert code == 0 and model in out
    code, out, err = run(capsys, url, "status")
    assert code == 0 and url in out + err, err
    code, out, err = run(capsys, url, "verify")
    assert code == 0, err
    code, out, err = run(capsys, url, "gc", "--keep", "1", "--apply")
    assert code == 0, err
    assert store.resolve("models", "champion") == model and store.verify() == []
    assert not any(store.backend.list(".work/")), "training's work directory was removed"
    for kind in ("datasets", "models", "generations"):
        assert len(store.versions(kind)) == 1, kind


@pytest.mark.slow
def test_demo_through_the_environment_variable(s3_store_url, tmp_path):
    env = {**os.environ, "CHARLM_STORAGE": s3_store_url, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "demo", "--headlines", "400",
                           "--max-minutes", "0.1", "-n", "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert s3_store_url in done.stderr
    assert not (tmp_path / "charlm-store").exists()  # nothing went to a local store
    store = Store(s3_store_url)
    for kind in ("datasets", "models", "evaluations", "generations"):
        assert store.versions(kind), kind
    assert store.verify() == []
    assert store.resolve("models", "champion")


def test_bad_store_urls_are_one_line_errors(capsys, s3_server, monkeypatch, tmp_path):
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    code, _, err = run(capsys, "ftp://host/x", "versions")
    assert_runtime_error(code, err, "ftp://host/x", "unknown scheme")
    code, _, err = run(capsys, "s3://no-such-bucket/x", "versions")
    assert_runtime_error(code, err, "s3://no-such-bucket/x", "does not exist")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    code, _, err = run(capsys, "s3://bucket/x", "versions")
    assert_runtime_error(code, err, "s3://bucket/x", "cannot reach")
    assert time.monotonic() - started < 60  # retried with backoff, then gave up


def test_credentials_in_a_store_url_are_never_printed(capsys, monkeypatch, tmp_path):
    """Finding 7: user:password in the store URL or in AWS_ENDPOINT_URL is `***` in the
    error line, the store's repr and (same root) the events."""
    monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
    port = free_port()
    url = f"https://alice:S3CRET@127.0.0.1:{port}/bkt"
    code, out, err = run(capsys, url, "versions")
    assert_runtime_error(code, err, f"https://***@127.0.0.1:{port}/bkt", "cannot reach")
    assert "S3CRET" not in out + err and "alice" not in out + err
    assert "S3CRET" not in repr(Store(url)) and "S3CRET" not in Store(url).root
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true",
                        "AWS_ENDPOINT_URL": f"http://bob:PW0rd9@127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "s3://bkt/x", "versions")
    assert_runtime_error(code, err, "s3://bkt/x", "cannot reach")
    assert "PW0rd9" not in out + err and "bob:" not in out + err


def test_wrong_credentials_are_a_one_line_error(capsys, tmp_path, monkeypatch):
    server = S3Server(log_path=tmp_path / "moto.log", auth_after=2)  # start-up probe, bucket
    try:
        url = server.bucket()
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CHARLM_CACHE", str(tmp_path / "cache"))
        code, _, err = run(capsys, url, "versions")
    finally:
        server.close()
    assert_runtime_error(code, err, url, "access denied")


def test_endpoint_killed_mid_upload(s3_server, s3_store_url, tmp_path):
    """The endpoint dies while `charlm ingest` uploads the version's first file: one line
    naming the store, exit 1, and the store (reached again directly) shows nothing of it."""
    proxy = CuttingProxy(s3_server.port, b"/store/datasets/")
    env = {**os.environ, **s3_server.env, "PYTHONPATH": str(REPO),
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
           "CHARLM_CACHE": str(tmp_path / "cache")}
    csv = write_csv(tmp_path / "headlines.csv", 2000, seed=3)
    done = subprocess.run([sys.executable, "-m", "cli.main", "--storage", s3_store_url,
                           "ingest", str(csv)], env=env, capture_output=True, text=True,
                          timeout=300)
    proxy.close()
    assert proxy.cut.is_set(), "the upload never started"
    assert_runtime_error(done.returncode, done.stderr, s3_store_url, "cannot reach")
    store = Store(s3_store_url)
    assert store.versions("datasets") == [] and store.aliases("datasets") == {}
    assert store.verify() == []
