"""The fused CPU gate kernels (charlm/native/gates.cc): compiled for this machine, then loaded;
and which recurrent path a training takes (`status`), the one home of that fact.

TensorFlow's pip build compiles its elementwise kernels for a baseline x86 without AVX2 or
AVX-512, and inside a while-loop each of a recurrent step's dozen elementwise ops is a kernel
launch of its own. charlm's recurrent layers (charlm.recurrent) run each step's gate math,
forward and backward, as one op compiled with `-march=native`. The source ships with the
package; the first process that needs the kernels compiles them with the system's C++
compiler against the installed TensorFlow's headers (about 15 s) into a cache shared by later
processes, keyed by the source, TensorFlow's version, the flags and this CPU's flags;
`charlm kernels` does it ahead of time (the Dockerfile runs it in the image).

Where the cache lives: `CHARLM_KERNEL_DIR`, else `$XDG_CACHE_HOME/charlm/kernels`, else
`$HOME/.cache/charlm/kernels`, else (no HOME, as for some services and containers)
`fallback_dir()`, a private folder in $TMPDIR (else /tmp). A cache folder that
cannot take a build (read-only, full) is passed over for that private folder; a build already
in it loads without writing anything, so a read-only image that holds one uses it. Concurrent
processes build once (a file lock; the others wait and load the result); a killed build's
`.part` file is removed by the next build.

`CHARLM_KERNELS=0` turns the kernels off (Keras' own loops run: the A/B switch). Without a
compiler, or if the build fails, the layers fall back to those loops (about 2x slower, never
wrong); `status()` says which path runs and why, for training's log, the model's record, the
training report and `charlm status`.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

SOURCE = Path(__file__).parent / "native" / "gates.cc"
# -ffast-math's optimisations but two: not -ffinite-math-only, which lets the compiler assume
# no NaN or infinity (a NaN in the gates or the logits must reach the loss, where training
# stops on it, as on Keras' path), and not the flag itself, with which GCC before 13 links a
# start-up file that switches the thread loading the library (and the threads it starts) to
# flush denormals to zero, numpy's and Python's floats included. What each choice costs:
# docs/model.md (benchmarks/bench_fast_math.py).
SAFE_FAST_MATH = ["-fno-math-errno", "-fno-trapping-math", "-fno-signed-zeros",
                  "-fassociative-math", "-freciprocal-math"]
FLAGS = ["-O3", "-march=native", *SAFE_FAST_MATH, "-fopenmp-simd", "-shared", "-fPIC", "-w"]
COMPILE_SECONDS = 300  # a generous bound for a loaded 2-core machine
# How long a process waits for another one's build of the same library before it builds its
# own in the private fallback folder (a builder is killed after COMPILE_SECONDS).
LOCK_SECONDS = COMPILE_SECONDS + 60
KERNELS, KERAS = "kernels", "keras"  # the two recurrent paths, as every record names them
SLOWER = "about 2x slower"  # Keras' loops against the kernels (docs/model.md)

_lock = threading.Lock()
_told = False  # whether the kernels' absence was said (by ops() or a caller of status())


class KernelsUnavailable(RuntimeError):
    """The kernels cannot be built or loaded here; the message is the cause, on one line."""


def enabled() -> bool:
    """False when CHARLM_KERNELS=0 (or 'false'/'no'/'off') asks for Keras' own loops."""
    return os.environ.get("CHARLM_KERNELS", "1").strip().lower() not in ("0", "false", "no", "off")


def fallback_dir() -> Path:
    """This user's private build folder in $TMPDIR, else the system's temporary folder
    (/tmp): where builds go without HOME, or when the cache folder cannot take them."""
    # $TMPDIR as given, even unwritable (then the reason says so): tempfile.gettempdir()
    # would quietly pick the next writable candidate, a folder nobody asked for.
    user = os.getuid() if hasattr(os, "getuid") else os.getlogin()
    return Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / f"charlm-kernels-{user}"


def cache_dir() -> Path:
    """The build cache folder: CHARLM_KERNEL_DIR, else $XDG_CACHE_HOME/charlm/kernels, else
    $HOME/.cache/charlm/kernels, else fallback_dir(). Never raises (no HOME is no error)."""
    if os.environ.get("CHARLM_KERNEL_DIR"):
        return Path(os.environ["CHARLM_KERNEL_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "charlm" / "kernels"
    if os.environ.get("HOME"):
        return Path(os.environ["HOME"]) / ".cache" / "charlm" / "kernels"
    # Not the password database's home: a service's may be absent or belong to someone else,
    # and Path.home() raises where the user has no entry (a container run with -u 1234).
    return fallback_dir()


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.processor()


def library_path(folder: Path | None = None) -> Path:
    """Where this source, TensorFlow, flags and CPU's build is (or will be) cached, in
    `folder` (default: cache_dir())."""
    import tensorflow as tf

    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), tf.__version__.encode(), " ".join(FLAGS).encode(),
                 _cpu_flags().encode(), platform.machine().encode()):
        key.update(part)
        key.update(b"\0")
    return (folder or cache_dir()) / f"gates-{key.hexdigest()[:16]}.so"


def build(target: Path) -> None:
    """Compile the kernels into `target` (atomically: concurrent builders never see half a
    file). KernelsUnavailable naming the compiler's complaint when they cannot be built;
    OSError when `target`'s folder cannot hold the build (another folder may)."""
    import tensorflow as tf

    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        raise KernelsUnavailable("no C++ compiler (g++ or $CXX) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".part")
    os.close(fd)
    command = [compiler, *FLAGS, str(SOURCE), "-o", partial,
               *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    try:
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=COMPILE_SECONDS)
        except OSError as err:  # the compiler itself: not the folder's fault
            raise KernelsUnavailable(f"{compiler} cannot run: {err.strerror or err}") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "error" in line]
            cause = lines[0] if lines else f"exit {done.returncode}"
            raise KernelsUnavailable(f"{compiler} failed: {cause}")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise KernelsUnavailable(f"{compiler} took over {COMPILE_SECONDS} s") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _remove_leftovers(target: Path) -> list[Path]:
    """Remove what killed builds left in `target`'s folder (their `.part` files); called
    with `target`'s lock held, so a `.part` of `target` belongs to no live builder. Another
    library's (another TensorFlow's) goes once older than any build lasts."""
    removed = []
    for part in target.parent.glob("gates-*.part"):
        try:
            if (part.name.startswith(target.name)
                    or time.time() - part.stat().st_mtime > 2 * LOCK_SECONDS):
                part.unlink()
                removed.append(part)
        except FileNotFoundError:
            pass  # its builder finished (or another cleaner came first)
    return removed


def _build_once(target: Path) -> None:
    """Build `target` unless another process did: one process builds, the others wait."""
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{target}.lock", timeout=LOCK_SECONDS):
            if target.exists():
                return  # built by the process that held the lock
            removed = _remove_leftovers(target)
            if removed:
                logging.getLogger("charlm").info(
                    "removed %d file(s) a killed kernel build left in %s", len(removed),
                    target.parent)
            build(target)
    except Timeout:
        raise TimeoutError(f"another process held {target}.lock for over {LOCK_SECONDS} s; "
                           "it may be stuck") from None


def _private(folder: Path) -> None:
    """Create `folder` for this user alone, or check that it is: a library loaded from a
    folder others can write would run their code."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if (not stat.S_ISDIR(info.st_mode) or info.st_mode & 0o022
            or (hasattr(os, "getuid") and info.st_uid != os.getuid())):
        raise PermissionError(0, "not a folder of this user's alone")


@dataclass(frozen=True)
class _Build:
    module: ModuleType | None
    library: Path | None = None
    folder: Path | None = None
    cause: str = ""  # why module is None


def _reason(err: BaseException) -> str:
    return (err.strerror if isinstance(err, OSError) and err.strerror else str(err)).strip()


@cache
def _load_from(folders: tuple[Path, ...]) -> _Build:
    """Load the kernels from the first of `folders` that has or can take the build; cached,
    so a process builds and loads at most once per folder choice."""
    import tensorflow as tf

    fallback, passed = fallback_dir(), []
    failed: _Build | None = None  # the compiler's failure: any folder would fail the same way
    for folder in folders:
        target = library_path(folder)
        if failed is not None and not target.exists():
            continue  # only a build made earlier can still help
        try:
            if folder == fallback:
                _private(folder)
            if not target.exists():
                _build_once(target)
        except OSError as err:  # the folder cannot take the build: the next one may
            passed.append(f"{folder}: {_reason(err)}")
            continue
        except KernelsUnavailable as err:
            failed = _Build(None, None, folder, str(err))
            continue
        try:
            module = tf.load_op_library(str(target))
        except (tf.errors.OpError, OSError) as err:
            return _Build(None, target, folder, f"{target} does not load: {_reason(err)}")
        if passed:
            logging.getLogger("charlm").info("kernels loaded from %s (passed over %s)", folder,
                                             "; ".join(passed))
        return _Build(module, target, folder)
    return failed or _Build(None, None, None,
                            "no folder can hold the build: " + "; ".join(passed))


def _load() -> _Build:
    # Keyed by the variables that pick the folders, and cached: ops() runs inside functions
    # tf.function traces, whose AutoGraph would otherwise step into tempfile and os (and
    # warn that it cannot convert them); it does not enter a functools.cache wrapper.
    return _load_for(os.environ.get("CHARLM_KERNEL_DIR"), os.environ.get("XDG_CACHE_HOME"),
                     os.environ.get("HOME"), os.environ.get("TMPDIR"))


@cache
def _load_for(*where: str | None) -> _Build:
    """_load_from this environment's folders (`where`: the variables that pick them)."""
    main = cache_dir()
    return _load_from((main,) if main == fallback_dir() else (main, fallback_dir()))


def ops() -> ModuleType | None:
    """The kernels' op module, or None (turned off, or they cannot be built here). Their
    absence is logged once per process, unless a caller of `status()` reports it."""
    global _told
    if not enabled():
        return None
    with _lock:
        built = _load()
        if built.module is None and not _told:
            _told = True
            logging.getLogger("charlm").warning(
                "fused CPU gate kernels unavailable, Keras' recurrent loops run instead "
                "(%s): %s", SLOWER, built.cause)
        return built.module


def features(library: Path) -> tuple[str, ...]:
    """The instruction sets a loaded build uses (its compiler's -march=native view)."""
    try:
        names = ctypes.CDLL(str(library)).charlm_kernel_features
    except (OSError, AttributeError):
        return ()
    names.restype = ctypes.c_char_p
    return tuple(names().decode().split())


@dataclass(frozen=True)
class KernelStatus:
    """Which recurrent path a training takes here, and why: what training logs before its
    first epoch and records with the model, the report and `charlm status` show, and
    `charlm kernels` prints."""

    path: str  # KERNELS (charlm's fused ops) or KERAS (Keras' own loops, or cuDNN on a GPU)
    precision: str  # the Keras dtype policy the layers compute in
    reason: str = ""  # why Keras' path ("" on the kernels' path)
    fallback: bool = False  # the kernels would run here but are off or cannot be built
    cpu_features: tuple[str, ...] = field(default=())  # what the build uses
    folder: str | None = None  # the build folder (None: none was found)
    library: str | None = None  # the loaded build

    def describe(self) -> str:
        """One line: `kernels, mixed_bfloat16` or `keras, float32: <reason>`."""
        if self.path == KERNELS:
            return f"{KERNELS}, {self.precision}"
        return f"{self.path}, {self.precision}: {self.reason}"

    def detail(self) -> str:
        """`describe()` and, on the kernels' path, the CPU features and the library."""
        if self.path != KERNELS:
            return self.describe()
        return (f"{self.describe()} ({' '.join(self.cpu_features) or 'no SIMD extension'}; "
                f"{self.library})")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "precision": self.precision, "reason": self.reason,
                "fallback": self.fallback, "cpu_features": list(self.cpu_features),
                "folder": self.folder, "library": self.library}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> KernelStatus:
        return cls(record.get("path", "?"), record.get("precision", "?"),
                   record.get("reason", ""), bool(record.get("fallback", False)),
                   tuple(record.get("cpu_features") or ()), record.get("folder"),
                   record.get("library"))


def _kernel_status(built: _Build, precision: str) -> KernelStatus:
    if built.module is None:
        return KernelStatus(KERAS, precision, f"{built.cause} ({SLOWER})", True,
                            folder=str(built.folder) if built.folder else None)
    return KernelStatus(KERNELS, precision, cpu_features=features(built.library),
                        folder=str(built.folder), library=str(built.library))


def status(precision: str = "auto", cell: str | None = None,
           gru_variant: str = "keras") -> KernelStatus:
    """Which recurrent path training `cell` (None: an LSTM or GRU) at `precision` (a Keras
    dtype policy, or "auto": charlm.model.resolve_precision) takes on this machine, building
    the kernels if they apply and are not built yet. The caller reports a fallback (ops()
    stays silent afterwards). The conditions are charlm.recurrent's (its layers' inner_loop
    and charlm.loss); tests/charlm/test_lm_kernels.py checks them against what runs."""
    global _told
    from charlm.devices import gpu_available
    from charlm.model import resolve_precision

    precision = resolve_precision(precision)
    if gpu_available():
        return KernelStatus(KERAS, precision, "a GPU: Keras' layers run cuDNN")
    if cell == "rnn":
        return KernelStatus(KERAS, precision, "the simple RNN has no fused kernel")
    if cell == "gru" and gru_variant != "keras":
        return KernelStatus(KERAS, precision, "the article's GRU variant (reset_after=False) "
                                              "has no fused kernel")
    if precision == "mixed_float16":
        return KernelStatus(KERAS, precision, "float16 has no fused kernel (float32 and "
                                              "bfloat16 do)")
    if not enabled():
        return KernelStatus(KERAS, precision, f"turned off by CHARLM_KERNELS="
                            f"{os.environ.get('CHARLM_KERNELS', '')} ({SLOWER})", True)
    with _lock:
        built = _load()
        _told = True
    return _kernel_status(built, precision)


def prepare() -> KernelStatus:
    """Build (once per machine) and load the kernels: their status at this machine's default
    precision, for `charlm kernels`. KernelsUnavailable naming the cause when they are
    turned off or cannot be built or loaded here."""
    global _told
    from charlm.model import resolve_precision

    if not enabled():
        raise KernelsUnavailable(f"turned off by CHARLM_KERNELS="
                                 f"{os.environ.get('CHARLM_KERNELS', '')} (unset it to use them)")
    with _lock:
        built = _load()
        _told = True
    if built.module is None:
        raise KernelsUnavailable(built.cause)
    return _kernel_status(built, resolve_precision("auto"))
