#!/usr/bin/env bash
# Runs one command on every worker of a TPU VM pod and collects the logs.
#
#   launch/tpu_pod.sh TPU_NAME ZONE [PROJECT] -- python -m experiments.scale --config=...
#
# Every worker gets the same command (JAX's multi-controller model: each process runs the
# whole program; jax.distributed finds the coordinator on a pod by itself). The repo must
# already be on every worker at $REMOTE_DIR (default ~/cave_jax), e.g. via
#   launch/tpu_pod.sh NAME ZONE -- 'git clone ... ~/cave_jax && pip install -e "~/cave_jax[tpu]"'
# Environment: REMOTE_DIR, LOG_DIR (local, default logs/TPU_NAME-DATE), EXTRA_ENV
# ("KEY=VALUE ..." exported on every worker before the command).
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,12p' "$0"; exit 2
fi
TPU_NAME=$1; ZONE=$2; shift 2
PROJECT_FLAG=()
if [[ $1 != "--" ]]; then PROJECT_FLAG=(--project "$1"); shift; fi
[[ $1 == "--" ]] || { echo "expected -- before the command" >&2; exit 2; }
shift
REMOTE_DIR=${REMOTE_DIR:-'~/cave_jax'}
STAMP=$(date +%Y%m%d-%H%M%S)
LOG_DIR=${LOG_DIR:-logs/${TPU_NAME}-${STAMP}}
mkdir -p "$LOG_DIR"
REMOTE_LOG="/tmp/cave_jax-${STAMP}.log"
COMMAND="cd ${REMOTE_DIR} && export ${EXTRA_ENV:-CAVE_RUN=${STAMP}} && ($*) 2>&1 | tee ${REMOTE_LOG}"

echo "running on all workers of ${TPU_NAME}: $*" | tee "$LOG_DIR/command.txt"
status=0
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --worker=all \
  --command "$COMMAND" 2>&1 | tee "$LOG_DIR/all_workers.log" || status=$?

# Collect each worker's own log (worker 0's holds the results table).
gcloud compute tpus tpu-vm scp "${TPU_NAME}:${REMOTE_LOG}" "$LOG_DIR/" --zone "$ZONE" \
  "${PROJECT_FLAG[@]}" --worker=all 2>/dev/null || echo "could not fetch per-worker logs" >&2
echo "logs in $LOG_DIR (exit status $status)"
exit $status
