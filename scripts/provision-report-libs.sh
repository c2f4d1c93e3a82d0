#!/usr/bin/env bash
# Installs the system libraries the trial report's PDF needs: WeasyPrint lays out with
# Pango and subsets fonts with HarfBuzz, and the report is set in DejaVu. Debian package
# names; idempotent (a second run does nothing); installing needs root.
set -euo pipefail

need=()
for pkg in libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "provision-report-libs: run as root to install ${need[*]} (the PDF report needs them)" >&2
    exit 1
fi
echo "provision-report-libs: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
