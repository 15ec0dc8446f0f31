"""The fused CPU gate kernels (charlm/native/gates.cc): compiled for this machine, then loaded.

TensorFlow's pip build compiles its elementwise kernels for a baseline x86 without AVX2 or
AVX-512, and inside a while-loop each of a recurrent step's dozen elementwise ops is a kernel
launch of its own. charlm's recurrent layers (charlm.recurrent) run each step's gate math,
forward and backward, as one op compiled with `-march=native`. The source ships with the
package; the first process that needs the kernels compiles them with the system's C++
compiler against the installed TensorFlow's headers (about 15 s) into a cache shared by later
processes, keyed by the source, TensorFlow's version and this CPU's flags.

Where the cache lives: `CHARLM_KERNEL_DIR`, else `$XDG_CACHE_HOME/charlm/kernels`, else
`~/.cache/charlm/kernels`. `CHARLM_KERNELS=0` turns the kernels off (Keras' own loops run:
the A/B switch). Without a compiler, or if the build fails, the layers fall back to those loops
with one warning naming the cause: slower, never wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from functools import cache
from pathlib import Path
from types import ModuleType

import tensorflow as tf
from filelock import FileLock

SOURCE = Path(__file__).parent / "native" / "gates.cc"
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-shared", "-fPIC", "-w"]
COMPILE_SECONDS = 300  # a generous bound for a loaded 2-core machine

_lock = threading.Lock()


def enabled() -> bool:
    """False when CHARLM_KERNELS=0 (or 'false'/'no'/'off') asks for Keras' own loops."""
    return os.environ.get("CHARLM_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    if os.environ.get("CHARLM_KERNEL_DIR"):
        return Path(os.environ["CHARLM_KERNEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charlm" / "kernels"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def library_path() -> Path:
    """Where this source, TensorFlow and CPU's build is (or will be) cached."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), " ".join(FLAGS).encode(),
                 _cpu_flags().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"gates-{key.hexdigest()[:16]}.so"


def build(target: Path) -> None:
    """Compile the kernels into `target` (atomically: concurrent builders never see half a
    file); RuntimeError naming the compiler's complaint when they cannot be built."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise RuntimeError("no C++ compiler (g++ or $CXX) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(fd)
    command = [compiler, *FLAGS, str(SOURCE), "-o", partial,
               *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_SECONDS)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "error" in line]
            cause = lines[0] if lines else f"exit {done.returncode}"
            raise RuntimeError(f"{compiler} failed: {cause}")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{compiler} took over {COMPILE_SECONDS} s") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


@cache
def _load() -> ModuleType | None:
    path = library_path()
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(f"{path}.lock"):  # one process compiles, the others wait for it
                if not path.exists():
                    build(path)
        return tf.load_op_library(str(path))
    except (RuntimeError, OSError, tf.errors.NotFoundError) as err:
        logging.getLogger("charlm").warning(
            "fused CPU gate kernels unavailable, Keras' recurrent loops run instead "
            "(slower): %s", err)
        return None


def ops() -> ModuleType | None:
    """The kernels' op module, or None (turned off, or they cannot be built here)."""
    if not enabled():
        return None
    with _lock:
        return _load()
