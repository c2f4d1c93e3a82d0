#!/usr/bin/env bash
# Makes deploy/mosquitto/passwd (hashed) and deploy/.env with fresh random passwords
# for the ingest workers, the console and each supplier named on the command line:
#   sudo deploy/make-credentials.sh acme gnssco tagco
#
# The password file is private to the broker: owned by the user and group Mosquitto
# reads it as, mode 0640. Mosquitto started as root (Debian's service, the
# eclipse-mosquitto image) drops to its own user before it opens the file, so a file
# only root may read stops the broker ("Unable to open pwfile"). Giving a file to
# another user needs root, hence sudo.
#   --owner USER[:GROUP]  who Mosquitto runs as. Default 1883:1883, the mosquitto user
#                         of the eclipse-mosquitto image as docker-compose.yml runs it;
#                         for Debian's mosquitto package: --owner mosquitto:mosquitto
#   --out DIR             write DIR/mosquitto/passwd and DIR/.env (default: deploy/)
# deploy/.env (the database's and every client's password, for docker compose) stays
# private to whoever ran this script (0600; under sudo, the user who ran sudo).
# Supplier names become MQTT usernames and topic levels (trackside/v1/SUPPLIER/...):
# up to 64 letters, digits, '.', '-' and '_' (as wire/topics.py reads them), and not a
# name the platform uses itself (ingest, console).
# Needs mosquitto_passwd (Debian package mosquitto; scripts/provision-services.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
owner="1883:1883"
out="$here"
usage() { echo "usage: $0 [--owner USER[:GROUP]] [--out DIR] SUPPLIER [SUPPLIER ...]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --owner) [ $# -ge 2 ] || usage; owner="$2"; shift 2 ;;
        --out) [ $# -ge 2 ] || usage; out="$2"; shift 2 ;;
        --) shift; break ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || usage
for supplier in "$@"; do
    case "$supplier" in
        ingest | console)
            echo "'$supplier' is the platform's own broker user, not a supplier name" >&2; exit 2 ;;
    esac
    if ! [[ "$supplier" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]]; then  # as wire/topics.py
        echo "'$supplier': a supplier name is up to 64 letters, digits, '.', '-' and '_'" \
            "(it is a topic level)" >&2
        exit 2
    fi
done
command -v mosquitto_passwd >/dev/null || {
    echo "mosquitto_passwd not found: install Mosquitto (scripts/provision-services.sh)" >&2; exit 1; }

mkdir -p -m 0755 "$out" "$out/mosquitto"  # the broker's user must reach the file inside
umask 077
passwd="$out/mosquitto/passwd"
env_file="$out/.env"
# both files are made aside and moved into place only once complete
passwd_new="$(mktemp "$out/mosquitto/.passwd.XXXXXX")"
env_new="$(mktemp "$out/.env.XXXXXX")"
trap 'rm -f "$passwd_new" "$env_new"' EXIT
{
    echo "# made by deploy/make-credentials.sh; keep out of version control"
    echo "POSTGRES_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
} > "$env_new"
for user in ingest console "$@"; do
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    mosquitto_passwd -b "$passwd_new" "$user" "$password"
    echo "MQTT_PASSWORD_$(echo "$user" | tr 'a-z.-' 'A-Z__')=$password" >> "$env_new"
done
if ! chown "$owner" "$passwd_new" 2>/dev/null; then
    echo "could not give $passwd to $owner (the broker's user): that needs root," \
        "so run this script with sudo (nothing was written)" >&2
    exit 1
fi
chmod 0640 "$passwd_new"
if [ -n "${SUDO_UID:-}" ] && [ "$(id -u)" = 0 ]; then
    chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$env_new"  # docker compose reads it as them
fi
mv -f "$passwd_new" "$passwd"
mv -f "$env_new" "$env_file"
trap - EXIT
echo "wrote $passwd (for the broker's user $owner, mode 0640) and $env_file for: ingest console $*"
