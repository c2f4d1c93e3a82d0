#!/usr/bin/env bash
# Installs what the integration tests run for real: Mosquitto (Debian package) and a C
# compiler for its reserved-client-id plugin, Chromium with its driver (the console
# page), and TimescaleDB. Debian 12 has no TimescaleDB package but Debian 13 (trixie) has
# postgresql-17-timescaledb, so TimescaleDB lives in a minimal trixie root made once
# per machine and cached outside the repository (TRACKFENCE_TSDB_ROOT).
# Idempotent: a second run on a provisioned machine does nothing. Needs root.
# Where Docker is available, `docker compose up` is the user's path instead.
set -euo pipefail

ROOT="${TRACKFENCE_TSDB_ROOT:-/var/cache/trackfence/trixie-timescaledb}"
need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
# the console page is tested in a real headless browser
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# the broker's reserved-client-id plugin (deploy/mosquitto/reserved_ids.c) is built by the tests
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)

if [ "$(id -u)" != 0 ]; then
    if [ ${#need_apt[@]} -gt 0 ] || [ ! -e "$ROOT/.ready" ]; then
        echo "provision-services: run as root to install ${need_apt[*]:-} TimescaleDB" >&2
        exit 1
    fi
    exit 0
fi

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "provision-services: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -e "$ROOT/.ready" ]; then
    echo "provision-services: building a trixie root for TimescaleDB in $ROOT (about a minute, once)"
    rm -rf "$ROOT"
    mkdir -p "$(dirname "$ROOT")"
    /usr/sbin/debootstrap --variant=minbase trixie "$ROOT" >/tmp/trackfence-debootstrap.log 2>&1 || {
        tail -20 /tmp/trackfence-debootstrap.log >&2; exit 1; }
    mount -t proc proc "$ROOT/proc"
    trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
    chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-17-timescaledb >/dev/null' \
        || { echo "provision-services: installing TimescaleDB in the trixie root failed" >&2; exit 1; }
    umount "$ROOT/proc"
    trap - EXIT
    touch "$ROOT/.ready"
fi
echo "provision-services: Mosquitto, Chromium and TimescaleDB ready"
