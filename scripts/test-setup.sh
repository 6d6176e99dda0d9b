#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12 machine that has Rust:
# PostgreSQL (server binaries; the tests make their own private cluster with initdb),
# Postfix's smtp-sink and a scripted aiosmtpd (real SMTP servers), lighttpd (real CGI),
# Apache 2.4 (mod_cgid, mod_php, suexec: how shared hosts run CGI and PHP), PHP and Perl's
# SOAP::Lite (foreign SOAP stacks), xmllint (XSD validation), zeep (a SOAP client mailrun
# did not write), curl and openapi-core (an HTTP client and an OpenAPI validator mailrun
# did not write) and Chromium
# (headless, for the status page), cargo-deb and dpkg tools (for the Debian package), faketime (clock skew).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql curl libxml2-utils postfix lighttpd apache2 apache2-suexec-pristine libapache2-mod-php php-cli php-xml libsoap-lite-perl python3 python3-venv ca-certificates chromium dpkg-dev groff-base binutils passwd faketime pgbouncer openssl)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-setup: installing ${missing[*]}" >&2
  # Postfix is only here for smtp-sink/smtp-source: do not configure a local MTA.
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools in a project-local virtualenv (Debian's pip refuses system-wide installs).
VENV=.venv-test
PY_PACKAGES=(zeep==4.3.1 aiosmtpd==1.4.6 requests openapi-core==0.19.5)
if [ ! -x "$VENV/bin/python3" ]; then
  /usr/bin/python3 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python3" -c "import zeep, aiosmtpd, requests, openapi_core" 2>/dev/null; then
  echo "test-setup: installing ${PY_PACKAGES[*]} into $VENV" >&2
  "$VENV/bin/python3" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

# cargo-deb builds the Debian package in tests/it/packaging.rs.
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "test-setup: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi

for tool in xmllint lighttpd /usr/sbin/smtp-sink /usr/sbin/apache2 php; do
  command -v "$tool" >/dev/null || { echo "test-setup: $tool still missing" >&2; exit 1; }
done
# The PHP runner needs PHP 8.1+ (fsync) with XMLReader and openssl, and mod_php for Apache.
php -r 'exit(PHP_VERSION_ID >= 80100 && class_exists("XMLReader") && function_exists("openssl_get_cert_locations") ? 0 : 1);' ||
  { echo "test-setup: php 8.1+ with xmlreader and openssl missing" >&2; exit 1; }
ls /usr/lib/apache2/modules/libphp8*.so >/dev/null 2>&1 || { echo "test-setup: mod_php missing" >&2; exit 1; }
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "test-setup: initdb missing" >&2; exit 1; }
echo "test-setup: ready" >&2
