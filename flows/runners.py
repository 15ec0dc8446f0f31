"""Which Prefect task runner executes the generation shards (threads, or a Dask cluster).

Chosen by environment so a deployment picks it with a job variable, without a code change:

    CHARLM_TASK_RUNNER=thread   (default) a thread pool of CHARLM_WORKERS threads (default 2)
    CHARLM_TASK_RUNNER=dask     prefect-dask's DaskTaskRunner: a temporary LocalCluster, or the
                                existing cluster at CHARLM_DASK_ADDRESS (tcp://host:8786)

Dask workers run shards in other processes or machines: they must see the same store
(CHARLM_STORAGE on a shared filesystem) and have this project importable.
"""

from __future__ import annotations

import os

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

RUNNER_ENV = "CHARLM_TASK_RUNNER"
WORKERS_ENV = "CHARLM_WORKERS"
DASK_ADDRESS_ENV = "CHARLM_DASK_ADDRESS"
RUNNERS = ("thread", "dask")


def task_runner_from_env() -> TaskRunner:
    """The task runner named by $CHARLM_TASK_RUNNER (read when the flow module is imported)."""
    kind = os.environ.get(RUNNER_ENV, "thread").strip().lower() or "thread"
    if kind not in RUNNERS:
        raise ValueError(f"{RUNNER_ENV} must be one of {', '.join(RUNNERS)}, got {kind!r}")
    workers = int(os.environ.get(WORKERS_ENV, "2"))
    if workers < 1:
        raise ValueError(f"{WORKERS_ENV} must be >= 1, got {workers}")
    if kind == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    return dask_runner(os.environ.get(DASK_ADDRESS_ENV) or None, workers)


def dask_runner(address: str | None = None, workers: int = 2,
                processes: bool = True) -> TaskRunner:
    """A DaskTaskRunner on the cluster at `address`, or on a new LocalCluster of `workers`
    single-threaded workers (TensorFlow already uses several cores per shard)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:  # the optional extra: pip install 'charlm[dask]'
        raise RuntimeError("the dask task runner needs prefect-dask: "
                           "pip install 'charlm[dask]'") from error
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": processes})
