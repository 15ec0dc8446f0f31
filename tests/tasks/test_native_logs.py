"""tasks.native_logs: TensorFlow's native log lines leave stderr, everything else passes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.native_logs import is_native_log_line

ROOT = Path(__file__).resolve().parents[2]
NATIVE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796071873.250006    4916 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1796071873.250268    4916 cudart_stub.cc:31] Could not find cuda drivers",
    b"E0000 00:00:1796071875.755341    4916 cuda_platform.cc:52] failed call to cuInit: ...",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"2024-01-01 12:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom ...",
]
OWN = [
    b"charlm: evaluate: unknown models version or alias 'x'",
    b"published generation 20260101-000000-000000-abcdef: 2 headlines",
    b"epoch 1: train 3.1 bits/char, validation 3.0 bits/char, 1.0 s, lr 5.00e-03",
    b"F0000 00:00:1796071875.755341    4916 check.cc:1] Check failed: fatal lines stay",
    b"Information about 2024 results",
    b"",
]


@pytest.mark.parametrize("line", NATIVE)
def test_native_lines_are_recognised(line: bytes) -> None:
    assert is_native_log_line(line)


@pytest.mark.parametrize("line", OWN)
def test_other_lines_are_kept(line: bytes) -> None:
    assert not is_native_log_line(line)


def test_filtered_process_stderr_keeps_only_its_own_lines_in_order() -> None:
    script = textwrap.dedent("""
        import os, sys
        from tasks.native_logs import filter_native_logs
        filter_native_logs()
        native, own = eval(sys.argv[1]), eval(sys.argv[2])
        for n, o in zip(native, own):
            os.write(2, n + b"\\n")  # as C++ writes: straight to the file descriptor
            sys.stderr.write(o.decode() + "\\n")
        sys.stderr.write("progress 50%\\r")  # a line redrawn before it ends
        sys.stderr.flush()
        sys.stderr.write("\\n")
        sys.stderr.flush()
        os.write(2, b"I0000 00:00:1.0 1 x.cc:1] a native line cut short by the exit")
    """)
    done = subprocess.run([sys.executable, "-c", script, repr(NATIVE), repr(OWN)], cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    own = b"".join(line + b"\n" for line in OWN)
    assert done.stderr == own + b"progress 50%\r\n"


def test_deployments_filter_before_the_flow_is_imported() -> None:
    text = (ROOT / "prefect.yaml").read_text()
    pull = text[text.index("\npull:"):text.index("\ndefinitions:")]
    assert "tasks.native_logs.pull_step" in pull
    from tasks.native_logs import pull_step

    assert callable(pull_step)
