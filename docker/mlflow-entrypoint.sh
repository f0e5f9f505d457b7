#!/bin/sh
# The tracking server's start: the PostgreSQL password from a file (a compose secret) into libpq's PGPASSWORD,
# so the backend store URI names no password and none sits in the compose file or the image.
set -eu
if [ -n "${PGPASSWORD_FILE:-}" ]; then
  PGPASSWORD="$(cat "$PGPASSWORD_FILE")" || { echo "PGPASSWORD_FILE=$PGPASSWORD_FILE: unreadable" >&2; exit 1; }
  export PGPASSWORD
fi
exec "$@"
