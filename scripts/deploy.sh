#!/usr/bin/env bash
# Create the work pools of prefect.yaml ("charlm-cpu", "charlm-gpu") as process pools where
# missing, and deploy every deployment in prefect.yaml (schedules and the
# charlm.dataset.published trigger included) to the server at $PREFECT_API_URL (default
# http://127.0.0.1:${PREFECT_PORT:-4200}/api). Create a pool yourself first to give it
# another type (docker, kubernetes: docs/deployments-split.md); an existing pool is kept.
# The deployments carry $CHARLM_STORAGE (default <project>/charlm-store) to every worker.
# Rerun after changing prefect.yaml or flow signatures; deployments are updated in place.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$CHARLM_PROJECT_DIR" # prefect.yaml and its entrypoints are relative to the project
# The default a process worker in this checkout would use anyway, made explicit: prefect.yaml
# reads it at deploy time.
export CHARLM_STORAGE="${CHARLM_STORAGE:-$CHARLM_PROJECT_DIR/charlm-store}"

for pool in $CHARLM_POOLS; do
  if "$PREFECT" work-pool inspect "$pool" >/dev/null 2>&1; then
    echo "work pool $pool exists" >&2
  else
    "$PREFECT" --no-prompt work-pool create "$pool" --type process
  fi
done
exec "$PREFECT" --no-prompt deploy --all "$@"
