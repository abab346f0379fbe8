#!/bin/sh
# runvault rotate --test hook for PostgreSQL: connects as the rotated role
# with the new password (stdin line 1) and runs `SELECT 1`.
#
# The role is $RUNVAULT_ROTATE_USER (`rotate --alternate`), else $PG_ROLE;
# the server is the one PGHOST, PGPORT and PGDATABASE on the hook's command
# line name. The password reaches psql in PGPASSWORD, which only psql's
# environment holds (readable by its own user and root, never in a
# command line).
set -eu
IFS= read -r password
role=${RUNVAULT_ROTATE_USER:-${PG_ROLE:?set PG_ROLE=ROLE on the hook command line, or rotate --alternate}}
PGPASSWORD=$password PGUSER=$role psql -X -q -At -v ON_ERROR_STOP=1 -c 'SELECT 1' >/dev/null
