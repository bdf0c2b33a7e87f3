#!/bin/sh
# On purge, remove certkeeper's state (journals, records) and the system
# user; certificates it wrote belong to the servers using them and are left
# alone (its output directory goes only when it is empty).
set -e
if [ "$1" = "purge" ]; then
  rm -rf /var/lib/certkeeper
  rmdir /etc/ssl/certkeeper 2>/dev/null || true
  if getent passwd certkeeper >/dev/null && command -v deluser >/dev/null; then
    deluser --system certkeeper >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
