"""`charlm kernels`: builds and checks the fused CPU kernels ahead of time, prints where they
are and which CPU features they use; exit 1 with the cause when they cannot be built."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import ERROR_LINE, assert_runtime_error, charlm, last_line

from charlm import kernels
from cli.main import main

REPO = Path(__file__).resolve().parents[2]
needs_compiler = pytest.mark.skipif(kernels.status("float32", "lstm").path != "kernels",
                                    reason="the kernels cannot be built here")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["kernels", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["kernels", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Build and check the fused CPU recurrent kernels ahead of time" in text
    for where in ("$CHARLM_KERNEL_DIR", "$XDG_CACHE_HOME", "~/.cache/charlm/kernels",
                  "$TMPDIR/charlm-kernels-UID", "CHARLM_KERNELS=0"):
        assert where in text


@needs_compiler
def test_prints_where_they_are_and_the_cpu_features_they_use(capsys):
    code, out, err = _run(capsys)  # this session's build: found, loaded, checked
    assert code == 0, err
    state = kernels.status()
    lines = out.splitlines()
    assert lines[0].startswith("kernels    built and checked")
    assert lines[1] == (f"cpu        {' '.join(state.cpu_features) or 'no SIMD extension'} "
                        "(compiled with -march=native)")
    assert lines[2] == f"training   {state.describe()}"
    assert lines[3] == f"folder     {kernels.cache_dir()}"
    assert last_line(out) == state.library and Path(state.library).exists()
    assert "building" not in err  # it was built already


def test_a_failed_build_exits_1_naming_the_cause(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("CHARLM_KERNEL_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "/bin/false")
    code, out, err = _run(capsys)
    assert_runtime_error(code, err, "charlm: kernels: /bin/false failed: exit 1; training "
                                    "runs Keras' loops (about 2x slower)")
    assert out == "" and f"building the fused CPU kernels in {tmp_path / 'cache'}" in err


def test_turned_off_exits_1_saying_so(capsys, monkeypatch):
    monkeypatch.setenv("CHARLM_KERNELS", "0")
    code, out, err = _run(capsys)
    assert_runtime_error(code, err, "turned off by CHARLM_KERNELS=0 (unset it to use them)")
    assert out == ""


@pytest.mark.slow
@needs_compiler
def test_the_program_builds_them_ahead_of_time(tmp_path, monkeypatch):
    # As the Dockerfile runs it: a fresh cache, the real compiler; then training finds them.
    monkeypatch.setenv("CHARLM_KERNEL_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # this checkout's code, installed or not
    done = charlm("kernels", timeout=600)
    assert done.returncode == 0, done.stderr
    library = Path(last_line(done.stdout))
    assert library.parent == tmp_path / "kernels" and library.exists()
    assert "building the fused CPU kernels" in done.stderr
    assert sorted(p.name for p in library.parent.iterdir()) == [library.name,
                                                                 f"{library.name}.lock"]


@pytest.mark.slow
@needs_compiler
def test_a_build_that_takes_nan_for_a_number_is_refused(tmp_path):
    # The clamp of exp by std::fmin/fmax, as before NaN was honoured: the build loads, and
    # `charlm kernels` refuses it, naming what it got wrong.
    source = tmp_path / "gates.cc"
    text = kernels.SOURCE.read_text()
    clamp = "v = v < -87.0f ? -87.0f : (v > 88.0f ? 88.0f : v);"
    assert clamp in text
    source.write_text(text.replace(clamp, "v = std::fmin(std::fmax(v, -87.0f), 88.0f);"))
    program = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from charlm import kernels
        kernels.SOURCE = Path({str(source)!r})
        from cli.main import main
        sys.exit(main(["kernels"]))
    """)
    import subprocess

    env = {**os.environ, "CHARLM_KERNEL_DIR": str(tmp_path / "kernels"),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", program], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and ERROR_LINE.match(last), done.stderr[-2000:]
    assert "does not pass a NaN on as Keras' loop does" in last
