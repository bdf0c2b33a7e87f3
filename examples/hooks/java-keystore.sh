#!/bin/sh
# A certkeeper hook: puts each certificate certkeeper renewed into a Java
# keystore (PKCS#12, what keytool makes by default since Java 9), under the
# certificate's configured name, replacing the entry it had. Use it as the
# reload command of a service with nothing else, notified by certificates
# that have a pkcs12_file:
#
#   service "java-app" {
#     reload = ["/usr/share/doc/certkeeper/examples/hooks/java-keystore.sh",
#               "/etc/app/keystore.p12",     # the keystore the application reads
#               "/etc/app/keystore.pass",    # its password (first line)
#               "/etc/app/tls.p12.pass"]     # the certificates' pkcs12_password_file
#   }
#   certificate "app" { ... pkcs12_file = "/etc/app/tls.p12"
#                           pkcs12_password_file = "/etc/app/tls.p12.pass"
#                           notify = ["java-app"] }
#
# It reads what changed from $CERTKEEPER_CHANGES (certkeeper's JSON
# document; README "Hooks that know what changed"): certificates with a
# pkcs12_file output. Passwords stay in their files (keytool's
# -storepass:file), never on a command line. The keystore is changed in a
# copy that replaces it in one rename. Then tell the application, if it
# does not watch the file: add its own reload after the loop.
#
# Needs keytool (Debian: openjdk-17-jre-headless) and jq.
set -eu

if [ $# -ne 3 ]; then
	echo "usage: $0 KEYSTORE KEYSTORE_PASSWORD_FILE PKCS12_PASSWORD_FILE" >&2
	exit 2
fi
keystore=$1 storepass=$2 p12pass=$3
: "${CERTKEEPER_CHANGES:?run this as a certkeeper service reload command}"

tmp=$(mktemp "$keystore.XXXXXX")
trap 'rm -f "$tmp" "$tmp.list"' EXIT
if [ -s "$keystore" ]; then
	cp "$keystore" "$tmp"
else
	rm -f "$tmp" # keytool makes a new keystore where none is
fi

changed=0
tab=$(printf '\t')
jq -r '.changes[] | select(.kind == "certificate" and .outputs.pkcs12_file != null)
	| [.name, .outputs.pkcs12_file, .serial, .reason] | @tsv' "$CERTKEEPER_CHANGES" >"$tmp.list"
while IFS="$tab" read -r name p12 serial reason; do
	if [ -s "$tmp" ]; then
		keytool -delete -alias "$name" -keystore "$tmp" -storetype PKCS12 -storepass:file "$storepass" >/dev/null 2>&1 || true
	fi
	# certkeeper's PKCS#12 files hold one key entry, which keytool calls "1".
	keytool -importkeystore -noprompt \
		-srckeystore "$p12" -srcstoretype PKCS12 -srcstorepass:file "$p12pass" -srcalias 1 \
		-destkeystore "$tmp" -deststoretype PKCS12 -deststorepass:file "$storepass" -destalias "$name" >/dev/null
	echo "java-keystore: $name serial $serial ($reason) now in $keystore"
	changed=1
done <"$tmp.list"
rm -f "$tmp.list"

if [ "$changed" = 1 ]; then
	chmod 0600 "$tmp"
	mv "$tmp" "$keystore"
fi
