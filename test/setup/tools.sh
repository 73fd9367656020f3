#!/usr/bin/env bash
# The real clients the integration tests talk to the server with, as users do: curl, wrk,
# h2load (--h1), the reference Prometheus client's parser, Python's websockets, Chromium
# (the chat page's browser test), and OpenSSL 3 (libssl3 and the openssl CLI) for TLS. `npm test` runs this first
# (pretest): what is missing is installed from Debian's packages when it can be (root with
# apt-get, as on CI), else the missing packages are named and the tests do not start.
set -euo pipefail
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || missing+=(python3 python3-prometheus-client)
/usr/bin/python3 -c 'import websockets' 2>/dev/null || missing+=(python3 python3-websockets)
command -v chromium >/dev/null || missing+=(chromium)
# TLS: the server's own libssl.so.3 (Node links its own copy, so having Node does not imply
# it) and the openssl CLI that makes the test certificates and is the s_client peer.
[ -e /usr/lib/x86_64-linux-gnu/libssl.so.3 ] || [ -e /usr/lib/aarch64-linux-gnu/libssl.so.3 ] || missing+=(libssl3)
command -v openssl >/dev/null || missing+=(openssl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "test tools: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "test tools missing: ${missing[*]} (Debian packages): apt-get install ${missing[*]}" >&2
  exit 1
fi
