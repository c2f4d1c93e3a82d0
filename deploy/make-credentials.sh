#!/usr/bin/env bash
# Makes deploy/mosquitto/passwd (hashed) and deploy/.env with fresh random passwords
# for the ingest workers, the console and each supplier named on the command line:
#   deploy/make-credentials.sh acme gnssco tagco
# Needs mosquitto_passwd (Debian package mosquitto; scripts/provision-services.sh).
set -euo pipefail
cd "$(dirname "$0")"
[ $# -gt 0 ] || { echo "usage: $0 SUPPLIER [SUPPLIER ...]" >&2; exit 2; }
umask 077
: > mosquitto/passwd
{
    echo "# made by deploy/make-credentials.sh; keep out of version control"
    echo "POSTGRES_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
} > .env
for user in ingest console "$@"; do
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    mosquitto_passwd -b mosquitto/passwd "$user" "$password"
    echo "MQTT_PASSWORD_$(echo "$user" | tr 'a-z-' 'A-Z_')=$password" >> .env
done
echo "wrote deploy/mosquitto/passwd and deploy/.env for: ingest console $*"
