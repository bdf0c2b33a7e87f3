#!/bin/sh
# Stops the agent before its binary goes away. Certificates on disk stay.
set -e
if [ -d /run/systemd/system ] && [ "$1" = "remove" ]; then
  systemctl stop certkeeper.service >/dev/null 2>&1 || true
  systemctl disable certkeeper.service >/dev/null 2>&1 || true
fi
exit 0
