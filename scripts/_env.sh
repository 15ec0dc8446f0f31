# Shared by scripts/*.sh (sourced, not run): the project directory, the prefect executable
# and the API address of the local server, all overridable from the environment.
#
#   PREFECT_PORT        server port (default 4200)
#   PREFECT_HOST        server address (default 127.0.0.1: the server has no authentication)
#   PREFECT_API_URL     where clients, workers and deploys talk to (default from the above)
#   CHARLM_PROJECT_DIR  the checkout flow runs change into (default: this repository)
#   PREFECT             the prefect executable (default: .venv/bin/prefect, else on PATH)
#   CHARLM_POOLS        the work pools deploy.sh creates and worker.sh serves (default: both
#                       pools of prefect.yaml; on a GPU machine of a split setup: charlm-gpu)

CHARLM_PROJECT_DIR="${CHARLM_PROJECT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export CHARLM_PROJECT_DIR
PREFECT_PORT="${PREFECT_PORT:-4200}"
PREFECT_HOST="${PREFECT_HOST:-127.0.0.1}"
export PREFECT_API_URL="${PREFECT_API_URL:-http://${PREFECT_HOST}:${PREFECT_PORT}/api}"
if [[ -z "${PREFECT:-}" ]]; then
  if [[ -x "$CHARLM_PROJECT_DIR/.venv/bin/prefect" ]]; then
    PREFECT="$CHARLM_PROJECT_DIR/.venv/bin/prefect"
  else
    PREFECT="prefect"
  fi
fi
# The names must match the work_pool names in prefect.yaml.
CHARLM_POOLS="${CHARLM_POOLS:-charlm-cpu charlm-gpu}"
