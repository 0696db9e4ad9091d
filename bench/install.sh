#!/usr/bin/env bash
# Installs what the tfmirror benchmarks use beyond the Rust toolchain and
# terraform (/usr/local/bin/terraform, as for the tests):
#   nginx  the baseline of serve-throughput (Debian package; the server it
#          starts at install is stopped and disabled, the bench runs its own)
#   oha    the fixed-rate load generator of metadata-latency (crates.io)
# Run as root, or with sudo available. Idempotent.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends nginx
  # The bench starts nginx itself, on its own port and config.
  $SUDO service nginx stop >/dev/null 2>&1 || true
fi

if ! command -v oha >/dev/null 2>&1; then
  cargo install --locked oha
fi

echo "nginx: $(command -v nginx || echo /usr/sbin/nginx)"
echo "oha:   $(command -v oha)"
