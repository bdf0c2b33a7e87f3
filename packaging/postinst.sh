#!/bin/sh
# Creates the system user certkeeper runs as, and what the documented
# first-run steps need before systemd ever started the unit: its state
# directory and the output directory of the shipped config, both its own.
set -e
if [ "$1" = "configure" ]; then
  # state_dir, which is also the user's home: its owner is who certkeeper
  # runs as (a root `certkeeper once` switches to it). An existing one is
  # left as it is: the unit's StateDirectory= gives it back to certkeeper
  # when it starts.
  made_state=
  if [ ! -e /var/lib/certkeeper ]; then
    install -d -m 0700 /var/lib/certkeeper
    made_state=1
  fi
  if ! getent passwd certkeeper >/dev/null; then
    adduser --system --group --home /var/lib/certkeeper --no-create-home \
      --gecos "certkeeper certificate agent" certkeeper >/dev/null
  fi
  if [ -n "$made_state" ]; then
    chown certkeeper:certkeeper /var/lib/certkeeper
  fi
  # It reads its config and credentials through its group.
  chown root:certkeeper /etc/certkeeper /etc/certkeeper/certkeeper.hcl
  # Where the shipped config and examples write (the unit's ReadWritePaths).
  # Only the directory itself is given to certkeeper, never what is in it.
  if [ ! -e /etc/ssl/certkeeper ]; then
    install -d -m 0755 -o certkeeper -g certkeeper /etc/ssl/certkeeper
  elif [ -d /etc/ssl/certkeeper ] && [ ! -L /etc/ssl/certkeeper ]; then
    chown certkeeper:certkeeper /etc/ssl/certkeeper
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
  fi
fi
exit 0
