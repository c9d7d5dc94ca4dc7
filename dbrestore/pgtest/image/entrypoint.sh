#!/bin/bash
# Entrypoint of restage's locally built PostgreSQL image (.ci/pg-image).
#
# Like the official postgres image: on an empty data folder it runs initdb as the superuser
# POSTGRES_USER (default postgres) with password POSTGRES_PASSWORD, creates POSTGRES_DB
# (default: POSTGRES_USER) on a temporary server reachable only by unix socket, runs
# /docker-entrypoint-initdb.d/*.sql and *.sh, stops it, then starts the real server on
# 0.0.0.0:5432 with scram-sha-256 password authentication for TCP. Extra arguments are
# passed to postgres (e.g. -c fsync=off). The server logs to standard error, so the line
# "database system is ready to accept connections" appears twice on a first start.
set -Eeuo pipefail

# As in the official image, "postgres -c ..." and "-c ..." both mean arguments for postgres.
if [[ ${1:-} == postgres ]]; then
	shift
fi

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
export PATH="$bindir:$PATH"

if [[ $(id -u) == 0 ]]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA" /var/run/postgresql
	chmod 0700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
	: "${POSTGRES_USER:=postgres}"
	: "${POSTGRES_DB:=$POSTGRES_USER}"
	auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
	if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
		echo "entrypoint: POSTGRES_PASSWORD is empty; set it, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
		exit 1
	fi
	pwfile=$(mktemp)
	printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
	initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
		--auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
	rm -f "$pwfile"
	printf '\n# restage image: password authentication from any address\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

	pg_ctl -D "$PGDATA" -w -t 120 -o "-c listen_addresses='' -k /var/run/postgresql" start
	psql=(psql -v ON_ERROR_STOP=1 -X -q -h /var/run/postgresql -U "$POSTGRES_USER")
	if [[ $POSTGRES_DB != postgres ]]; then
		"${psql[@]}" -d postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
	fi
	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case $f in
		*.sql) echo "entrypoint: running $f" >&2; "${psql[@]}" -d "$POSTGRES_DB" -f "$f" ;;
		*.sh) echo "entrypoint: running $f" >&2; PGHOST=/var/run/postgresql PGUSER=$POSTGRES_USER PGDATABASE=$POSTGRES_DB bash "$f" ;;
		*) echo "entrypoint: ignoring $f" >&2 ;;
		esac
	done
	pg_ctl -D "$PGDATA" -w -m fast stop
	echo "entrypoint: initialisation complete" >&2
fi

exec postgres -D "$PGDATA" -c listen_addresses='*' -p 5432 -k /var/run/postgresql "$@"
