#!/usr/bin/env bash
# Restores a docker/backup.sh backup into the stack's volumes, for example after `down -v` or on a new host:
#   docker/restore.sh DIR
# Starts PostgreSQL alone, replaces the tracking database with the dump, unpacks the artifacts into their volume
# (emptied first), then starts the stack. Which stack: COMPOSE_PROJECT_NAME and COMPOSE_FILE as for
# docker-compose (default: the project `vessel`, docker/compose.yaml).
set -euo pipefail
dir="${1:?usage: docker/restore.sh DIR}"
for f in mlflow.dump artifacts.tar.gz; do
  [ -s "$dir/$f" ] || { echo "restore.sh: $dir/$f is missing or empty" >&2; exit 1; }
done
cd "$(dirname "$0")/.."
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-vessel}" COMPOSE_FILE="${COMPOSE_FILE:-docker/compose.yaml}"
compose=(docker-compose)
docker compose version >/dev/null 2>&1 && compose=(docker compose)

"${compose[@]}" stop app mlflow >/dev/null 2>&1 || true  # nothing may write while the data is replaced
"${compose[@]}" up -d postgres
for _ in $(seq 60); do
  "${compose[@]}" exec -T postgres pg_isready -h 127.0.0.1 -U mlflow -d mlflow >/dev/null 2>&1 && break
  sleep 1
done
"${compose[@]}" exec -T postgres pg_restore -U mlflow -d mlflow --clean --if-exists --no-owner --exit-on-error <"$dir/mlflow.dump"
"${compose[@]}" run --rm --no-deps -T --entrypoint sh mlflow \
  -c 'find /mlflow/artifacts -mindepth 1 -delete && tar -C /mlflow/artifacts -xzf -' <"$dir/artifacts.tar.gz"
"${compose[@]}" up -d
echo "restored $COMPOSE_PROJECT_NAME from $dir"
