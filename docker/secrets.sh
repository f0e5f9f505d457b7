#!/usr/bin/env bash
# The stack's secrets as files (compose secrets): the API key every POST needs and the tracking database's
# password, random, made once. Existing files are kept.
#   docker/secrets.sh [DIR]          # default: $VESSEL_SECRETS_DIR or docker/secrets
# The folder is 0700 (other users of this host cannot open it); the files are 0644 because Compose v1 mounts a
# secret file as it is and the containers' users (uid 10001, 999) must read it.
set -euo pipefail
dir="${1:-${VESSEL_SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}}"
mkdir -p "$dir"
chmod 0700 "$dir"
for name in api_key postgres_password; do
  if [ ! -s "$dir/$name" ]; then
    (umask 022 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name")
    echo "$dir/$name: created"
  else
    echo "$dir/$name: kept"
  fi
done
