#!/usr/bin/env bash
# Starts PostgreSQL and MariaDB if they are down (the project's machines run
# both already; a fresh or rebooted one may not), and waits until they answer.
set -euo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! mariadb-admin ping --silent >/dev/null 2>&1; then
    echo "starting MariaDB"
    # It refuses to run as root without --user, and fails silently in the background.
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
fi
for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p 5432 && mariadb-admin ping --silent >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
echo "databases did not come up within 60 s" >&2
pg_isready -h 127.0.0.1 -p 5432 || true
mariadb-admin ping || true
exit 1
