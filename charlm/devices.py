"""Where training runs: device facts, and one or several replicas under a tf.distribute strategy.

`--devices 1` (the default) trains on TensorFlow's default device: the first GPU when there is
one, else the CPU. `--devices N` mirrors the model over N GPUs with MirroredStrategy (each
global batch split across the replicas, gradients summed); `--devices all` takes every GPU.
On a machine without GPUs, `--devices N` splits the CPU into N logical devices, so the
multi-device code path runs, and is tested, anywhere (it brings no speed there: the logical
devices share the same cores).

Logical devices can only be made before TensorFlow initialises its runtime, so
`configure_devices` must run first thing in a process (the CLI and the training flow call it
before any TensorFlow work).
"""

from __future__ import annotations

from functools import cache

import tensorflow as tf

ALL = "all"
CPU_SCORING_BATCH = 256  # headlines per scoring batch on a CPU: bounded memory, no gain beyond
GPU_SCORING_BATCH = 4096  # a GPU needs big batches to be busy; (4096, 256, 118) f32 = 0.5 GB


@cache
def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def gpu_available() -> bool:
    return gpu_count() > 0


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with bfloat16 matrix instructions (AVX512_BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def parse_devices(value: int | str) -> int | str:
    """A --devices value: a count >= 1 or 'all'; ValueError naming the bad value."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == ALL:
            return ALL
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"devices must be a count >= 1 or 'all', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"devices must be a count >= 1 or 'all', got {value!r}")
    return value


def replica_count(devices: int | str) -> int:
    """How many replicas `devices` means on this machine."""
    devices = parse_devices(devices)
    gpus = gpu_count()
    if devices == ALL:
        return max(gpus, 1)
    if gpus and devices > gpus:
        raise ValueError(f"devices={devices} but this machine has {gpus} GPU(s)")
    return devices


def configure_devices(devices: int | str) -> int:
    """Prepare this process for `devices` replicas; returns the replica count.

    Without GPUs and with N > 1, splits the CPU into N logical devices; that is only
    possible before TensorFlow's runtime starts, otherwise a ValueError says so.
    """
    count = replica_count(devices)
    if count == 1 or gpu_count():
        return count
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return count
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as error:
        raise ValueError(
            f"devices={count} on a CPU machine needs {count} logical CPU devices, which can "
            f"only be made before TensorFlow starts ({error}); configure them first") from None
    return count


def make_strategy(devices: int | str = 1) -> tf.distribute.Strategy:
    """The strategy for `devices`: TensorFlow's default for one, MirroredStrategy for several."""
    count = configure_devices(devices)
    if count == 1:
        return tf.distribute.get_strategy()
    if gpu_count():
        names = [d.name for d in tf.config.list_logical_devices("GPU")][:count]
        return tf.distribute.MirroredStrategy(names)
    names = [d.name for d in tf.config.list_logical_devices("CPU")][:count]
    # NCCL, the default all-reduce, needs GPUs.
    return tf.distribute.MirroredStrategy(
        names, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device=names[0]))


def scoring_batch_size() -> int:
    """Headlines per batch when scoring (evaluation, validation)."""
    return GPU_SCORING_BATCH if gpu_available() else CPU_SCORING_BATCH
