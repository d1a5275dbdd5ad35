#!/usr/bin/env bash
# One task per host on a GPU cluster; every task runs the same command.
#
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm.sh python -m experiments.scale --config=...
#
# Each task exports the coordinator (first node of the allocation), the process count and
# its own id as CAVE_COORDINATOR / CAVE_NUM_PROCESSES / CAVE_PROCESS_ID, which
# cave_jax.parallel.initialize() hands to jax.distributed.initialize(). Logs go to
# logs/slurm-JOBID/task-N.log. Environment: CAVE_PORT (coordinator port, default 12355).
#SBATCH --job-name=cave_jax
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=logs/slurm-%j.out
set -euo pipefail

if [[ $# -lt 1 ]]; then
  sed -n '2,11p' "$0"; exit 2
fi
: "${SLURM_JOB_ID:?run this with sbatch or srun inside an allocation}"
PORT=${CAVE_PORT:-12355}
HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
LOG_DIR=logs/slurm-${SLURM_JOB_ID}
mkdir -p "$LOG_DIR"

srun --ntasks="$SLURM_NNODES" --ntasks-per-node=1 bash -c '
  export CAVE_COORDINATOR='"$HEAD:$PORT"'
  export CAVE_NUM_PROCESSES=$SLURM_NTASKS
  export CAVE_PROCESS_ID=$SLURM_PROCID
  "$@" > '"$LOG_DIR"'/task-$SLURM_PROCID.log 2>&1
' bash "$@"
