"""Prefect flows of the charlm pipeline: the operations of `tasks/`, run and watched in Prefect.

| flow (module) | wraps |
| --- | --- |
| `ingest-headlines` (ingest) | inbox: claim, ingest (per file on failure), archive, drift, event |
| `ingest-feed` (feeds) | `tasks.feeds.ingest_feeds`, then the dashboard tables and the event |
| `train-headlines` (train) | `tasks.champion.train_challenger` unless nothing is new; drift trend |
| `generate-headlines` (generate) | `tasks.generate.generate_headlines`, shards as mapped tasks |
| `compare-architectures` (compare) | `tasks.compare.compare_architectures` |

A flow adds what only Prefect has: mapping over a task runner (runners.py), artifacts and
events; the command line (cli/) calls the same operations without a Prefect server.
Deployments (schedules, the event trigger, the work pool) are in prefect.yaml at the project
root; scripts/ starts a server and a worker and deploys. A flow run started from a
deployment first filters TensorFlow's native log lines out of its stderr (the pull step
tasks.native_logs.pull_step).
"""
