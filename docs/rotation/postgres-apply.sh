#!/bin/sh
# runvault rotate hook for PostgreSQL: sets a role's password.
#
#   --apply:  stdin line 1 is the new password (line 2, the old one, is not used)
#   --revert: stdin line 1 is the password to put back
#
# The role is $RUNVAULT_ROTATE_USER (set by `rotate --alternate`), else
# $PG_ROLE. The admin connection comes from the libpq variables the hook's
# command line sets (PGHOST, PGPORT, PGUSER, PGDATABASE) and that admin's
# own authentication (peer, ~/.pgpass): runvault gives the hook a clean
# environment (PATH, HOME, LANG and RUNVAULT_ROTATE_*), nothing else.
#
# The password never appears in a command line: it is read from stdin,
# quoted by shell built-ins and `sed` (which reads it on stdin), and sent
# to psql as SQL on psql's stdin. The server hashes it (scram-sha-256).
set -eu
IFS= read -r password
role=${RUNVAULT_ROTATE_USER:-${PG_ROLE:?set PG_ROLE=ROLE on the hook command line, or rotate --alternate}}
literal=$(printf '%s' "$password" | sed "s/'/''/g")
ident=$(printf '%s' "$role" | sed 's/"/""/g')
printf 'ALTER ROLE "%s" PASSWORD '\''%s'\'';\n' "$ident" "$literal" |
    psql -X -q -v ON_ERROR_STOP=1
