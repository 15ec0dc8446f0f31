"""Thin Prefect tasks, one per pipeline stage, and the operations built from them.

A task loads inputs, calls charlm / ingestion / storage and publishes a version, returning
ids and paths rather than models or frames. An *operation* is a plain function that chains
tasks through `tasks.common.run_task`; the command line (cli/), the Prefect flows (flows/)
and the demo all call the same operation, so a run from the terminal and a run in a flow
do exactly the same work (inside a flow run every step shows as a task run).

| module | tasks | operation |
| --- | --- | --- |
| ingest | ingest-csv, claim-inbox, archive-inbox (`publish_on_latest`: shared with feeds) | |
| feeds | poll-feed, publish-buffer | `ingest_feeds` |
| train | train-model | |
| evaluate | evaluate-model (a dataset's split or recent view), evaluate-csv (any CSV) | |
| drift | score-drift, publish-drift-trend | `record_drift` (after ingestion) |
| champion | champion-status, promote, promote-if-unset | `train_challenger` |
| generate | generate-shard, publish-generation | `generate_headlines` |
| compare | publish-comparison | `compare_architectures` |
| demo | write-demo-corpus | `run_demo` |
| importer | import-article | |
| events | emit-dataset-published | |
| presets | the operations' defaults (feed URLs, batching, retries, demo, compare) | |
| report | publish-report, publish-table (artifacts) | |
| callbacks | training side effects: logs, TensorBoard, progress artifact, progress bar | |
| native_logs | TensorFlow's C++ start-up chatter kept off stderr | |
"""
