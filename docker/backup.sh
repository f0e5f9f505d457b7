#!/usr/bin/env bash
# Backs up the stack's tracking data: a pg_dump of the tracking database (runs, metrics, the model registry) and
# a tar of the artifacts volume (logged models, figures), into DIR.
#   docker/backup.sh DIR             # e.g. docker/backup.sh backups/$(date +%F)
# The stack must be up. Which stack: COMPOSE_PROJECT_NAME and COMPOSE_FILE as for docker-compose (default: the
# project `vessel`, docker/compose.yaml). Take it while no training job writes, so the two parts agree.
# Restore with docker/restore.sh DIR.
set -euo pipefail
dir="${1:?usage: docker/backup.sh DIR}"
cd "$(dirname "$0")/.."
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-vessel}" COMPOSE_FILE="${COMPOSE_FILE:-docker/compose.yaml}"
compose=(docker-compose)
docker compose version >/dev/null 2>&1 && compose=(docker compose)
mkdir -p "$dir"
"${compose[@]}" exec -T postgres pg_dump -U mlflow -d mlflow --format=custom >"$dir/mlflow.dump.part"
"${compose[@]}" exec -T mlflow tar -C /mlflow/artifacts -czf - . >"$dir/artifacts.tar.gz.part"
mv "$dir/mlflow.dump.part" "$dir/mlflow.dump"
mv "$dir/artifacts.tar.gz.part" "$dir/artifacts.tar.gz"
echo "backed up $COMPOSE_PROJECT_NAME to $dir: $(du -sh "$dir/mlflow.dump" | cut -f1) database, $(du -sh "$dir/artifacts.tar.gz" | cut -f1) artifacts"
