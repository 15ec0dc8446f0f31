#!/usr/bin/env bash
# Create the "charlm-process" work pool (if missing) and deploy every deployment in
# prefect.yaml (schedules and the charlm.dataset.published trigger included) to the server
# at $PREFECT_API_URL (default http://127.0.0.1:${PREFECT_PORT:-4200}/api).
# Rerun after changing prefect.yaml or flow signatures; deployments are updated in place.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$CHARLM_PROJECT_DIR" # prefect.yaml and its entrypoints are relative to the project

if "$PREFECT" work-pool inspect "$CHARLM_POOL" >/dev/null 2>&1; then
  echo "work pool $CHARLM_POOL exists" >&2
else
  "$PREFECT" --no-prompt work-pool create "$CHARLM_POOL" --type process
fi
exec "$PREFECT" --no-prompt deploy --all "$@"
