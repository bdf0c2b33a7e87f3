#!/bin/sh
# On purge, remove certkeeper's state (journals, records); certificates it
# wrote elsewhere belong to the servers using them and are left alone.
set -e
if [ "$1" = "purge" ]; then
  rm -rf /var/lib/certkeeper
  if getent passwd certkeeper >/dev/null && command -v deluser >/dev/null; then
    deluser --system certkeeper >/dev/null 2>&1 || true
  fi
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
