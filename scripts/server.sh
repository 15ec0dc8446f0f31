#!/usr/bin/env bash
# Start a Prefect server (API and UI) for charlm on 127.0.0.1:${PREFECT_PORT:-4200}.
#
#   scripts/server.sh                      # UI at http://127.0.0.1:4200
#   PREFECT_PORT=4300 scripts/server.sh    # another port: API, UI and its API address follow
#
# Data: SQLite under $PREFECT_HOME (default ~/.prefect). For PostgreSQL set
#   PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://user:pass@host:5432/prefect
# Extra arguments go to `prefect server start` (e.g. --no-services, --log-level DEBUG).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"

# `prefect server start --port N` alone would serve the API on N but leave the UI calling
# the API at the default port 4200; the settings below move all three together.
export PREFECT_SERVER_API_HOST="$PREFECT_HOST"
export PREFECT_SERVER_API_PORT="$PREFECT_PORT"
export PREFECT_UI_API_URL="$PREFECT_API_URL"
echo "Prefect server: API $PREFECT_API_URL, UI http://$PREFECT_HOST:$PREFECT_PORT" >&2
exec "$PREFECT" server start --host "$PREFECT_HOST" --port "$PREFECT_PORT" "$@"
