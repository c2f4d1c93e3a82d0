#!/usr/bin/env bash
# A local certificate authority and a server certificate signed by it, for MQTT over
# TLS (Mosquitto) and HTTPS (the console). For a trial or a site network with no
# public CA; in production use the organisation's own CA the same way.
#
#   deploy/make-ca.sh DIR HOST [HOST ...]     e.g.  deploy/make-ca.sh deploy/certs mosquitto localhost 127.0.0.1
#
# Writes DIR/ca.crt (give it to every client), DIR/ca.key (keep it offline), and
# DIR/server.crt + DIR/server.key (the broker's and the console's). Uses openssl.
set -euo pipefail
dir="${1:?usage: make-ca.sh DIR HOST [HOST ...]}"
shift
[ $# -gt 0 ] || { echo "name at least one host the server is reached by" >&2; exit 2; }
mkdir -p "$dir"
san=""
for host in "$@"; do
    if [[ "$host" =~ ^[0-9.]+$ ]]; then san+="IP:$host,"; else san+="DNS:$host,"; fi
done
san="${san%,}"
if [ ! -e "$dir/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=trackfence local CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
fi
openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$dir/server.key" \
    -out "$dir/server.csr" 2>/dev/null
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 825 -out "$dir/server.crt" \
    -extfile <(printf "subjectAltName=%s\nextendedKeyUsage=serverAuth\n" "$san") 2>/dev/null
rm -f "$dir/server.csr"
chmod 600 "$dir/ca.key" "$dir/server.key"
echo "wrote $dir/ca.crt, $dir/server.crt and $dir/server.key for: $*"
