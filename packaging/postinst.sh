#!/bin/sh
# Creates the system user certkeeper runs as, and lets it read its config.
set -e
if [ "$1" = "configure" ]; then
  if ! getent passwd certkeeper >/dev/null; then
    adduser --system --group --home /var/lib/certkeeper --no-create-home \
      --gecos "certkeeper certificate agent" certkeeper >/dev/null
  fi
  chown root:certkeeper /etc/certkeeper /etc/certkeeper/certkeeper.hcl
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
  fi
fi
exit 0
