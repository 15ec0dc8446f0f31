"""Version ids, alias names, kinds, default_root and code_version."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

import storage
from storage import KINDS, StorageError, check_alias_name, check_kind, is_version_id
from storage.ids import id_time, new_version_id


def test_version_ids_are_sortable_unique_and_human_friendly():
    ids = [new_version_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)  # strictly increasing within a process, even in one microsecond
    assert all(re.fullmatch(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{6}", i) for i in ids)
    assert all(is_version_id(i) for i in ids)


def test_version_id_encodes_utc_creation_time():
    moment = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=timezone.utc)
    version_id = new_version_id(moment)
    assert version_id.startswith("20310203-040506-789012-")
    assert id_time(version_id) == moment


def test_version_ids_never_go_backwards_when_the_clock_does(monkeypatch):
    # The process's last id time is module state: restored afterwards, or every later id of
    # this test session would be dated 2098 and id prefixes in other tests would collide.
    monkeypatch.setattr(storage.ids, "_last_time", None)
    later = new_version_id(datetime(2099, 1, 1, tzinfo=timezone.utc))
    earlier_clock = new_version_id(datetime(2098, 1, 1, tzinfo=timezone.utc))
    assert earlier_clock > later


@pytest.mark.parametrize("name", ["latest", "champion", "v1", "best_model", "a-b", "x" * 64])
def test_good_alias_names(name):
    assert check_alias_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Latest",
        "a b",
        "../x",
        "a/b",
        ".hidden",
        "x" * 65,
        "2026",
        "20261128-1234",
        "1abc",
        "20261128-123456-123456-a1b2cz",
    ],
)
def test_bad_alias_names_are_named_in_the_error(name):
    with pytest.raises(StorageError, match=re.escape(repr(name))):
        check_alias_name(name)


def test_bad_kind_is_named_in_the_error():
    assert check_kind("models") == "models"
    with pytest.raises(StorageError, match="'model'"):
        check_kind("model")
    assert KINDS == ("datasets", "models", "evaluations", "generations")


def test_default_root_uses_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARLM_STORAGE", str(tmp_path / "elsewhere"))
    assert storage.default_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("CHARLM_STORAGE")
    assert storage.default_root() == Path("charlm-store")
    monkeypatch.setenv("CHARLM_STORAGE", "")
    assert storage.default_root() == Path("charlm-store")


def test_code_version_format():
    version = storage.code_version()
    assert re.fullmatch(r"git:[0-9a-f]{4,40}(-dirty)?|charlm \S+", version), version


def test_code_version_falls_back_to_package_version_without_git(monkeypatch):
    from storage import provenance

    monkeypatch.setenv("PATH", "")  # no git executable to be found
    provenance.code_version.cache_clear()
    try:
        assert provenance.code_version().startswith("charlm ")
    finally:
        provenance.code_version.cache_clear()


def test_storage_does_not_import_prefect_or_tensorflow():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = "import sys, storage; print(sorted({'prefect', 'tensorflow'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
