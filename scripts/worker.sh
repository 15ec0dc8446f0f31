#!/usr/bin/env bash
# Start one process worker per work pool in $CHARLM_POOLS (default: "charlm-cpu charlm-gpu",
# so one machine runs the whole pipeline; CHARLM_POOLS=charlm-gpu on a GPU machine of a
# split setup). The workers run the deployments' flows as subprocesses of themselves, in
# this environment. Flow runs change into $CHARLM_PROJECT_DIR (default: this checkout;
# prefect.yaml's pull step) and use the store the deployment carries (CHARLM_STORAGE at
# deploy time). Extra arguments go to every `prefect worker start` (e.g. --limit 1: one
# flow at a time per pool).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
# Flow runs, and any Dask worker processes they start, import tasks/charlm/storage from here.
export PYTHONPATH="$CHARLM_PROJECT_DIR${PYTHONPATH:+:$PYTHONPATH}"
cd "$CHARLM_PROJECT_DIR"
read -r -a pools <<<"$CHARLM_POOLS"
if ((${#pools[@]} == 1)); then
  exec "$PREFECT" worker start --pool "${pools[0]}" --type process "$@"
fi
pids=()
# If one worker stops, or this script is told to, stop them all: none is left orphaned.
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
trap 'exit 143' TERM INT
for pool in "${pools[@]}"; do
  "$PREFECT" worker start --pool "$pool" --type process "$@" &
  pids+=("$!")
done
status=0
wait -n || status=$?
exit "$status"
