#!/usr/bin/env bash
# Start a process worker on the "charlm-process" pool: it runs the deployments' flows as
# subprocesses of itself, in this environment. Flow runs change into $CHARLM_PROJECT_DIR
# (default: this checkout; prefect.yaml's pull step) and use the store at $CHARLM_STORAGE
# (default: <project>/charlm-store). Extra arguments go to `prefect worker start`
# (e.g. --limit 1 to run one flow at a time on this machine).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
# Flow runs, and any Dask worker processes they start, import tasks/charlm/storage from here.
export PYTHONPATH="$CHARLM_PROJECT_DIR${PYTHONPATH:+:$PYTHONPATH}"
cd "$CHARLM_PROJECT_DIR"
exec "$PREFECT" worker start --pool "$CHARLM_POOL" --type process "$@"
