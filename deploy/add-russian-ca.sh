#!/usr/bin/env bash
# Adds the Russian Trusted Root CA (Минцифры) to the system's trusted certificates: GigaChat's API
# (and other Russian state-issued TLS sites) present certificates it signed.
#
#   deploy/add-russian-ca.sh FILE_OR_FOLDER...
#
# Download the certificates yourself beforehand from Gosuslugi, https://www.gosuslugi.ru/crt
# («Корневой сертификат» and «Выпускающий сертификат», PEM or DER): an image build or a CI run has
# no guarantee of reaching that site. The Dockerfile passes deploy/certs, where you put them
# before `docker build`; a folder without certificates is skipped with a note, a named file that
# does not exist is an error. Each certificate is installed as PEM under CA_DIR (default
# /usr/local/share/ca-certificates; names lowercased, "_pem" and the extension dropped, ".crt"
# added: russian_trusted_root_ca_pem.crt becomes russian_trusted_root_ca.crt), then
# update-ca-certificates rebuilds /etc/ssl/certs/ca-certificates.crt. Point the app at it:
# GIGACHAT_CA_BUNDLE_FILE=/etc/ssl/certs/ca-certificates.crt (the GigaChat SDK otherwise trusts
# only certifi's list). UPDATE_CA_CERTIFICATES overrides the rebuild command (tests: true).
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 FILE_OR_FOLDER... (certificates from https://www.gosuslugi.ru/crt)" >&2
  exit 2
fi
CA_DIR="${CA_DIR:-/usr/local/share/ca-certificates}"
UPDATE="${UPDATE_CA_CERTIFICATES:-update-ca-certificates}"

files=()
for arg in "$@"; do
  if [[ -d "$arg" ]]; then
    while IFS= read -r -d '' f; do files+=("$f"); done < <(
      find "$arg" -maxdepth 1 -type f \( -iname '*.crt' -o -iname '*.cer' -o -iname '*.pem' \) -print0 | sort -z
    )
  elif [[ -f "$arg" ]]; then
    files+=("$arg")
  else
    echo "no such certificate file: $arg (download it from https://www.gosuslugi.ru/crt)" >&2
    exit 1
  fi
done
if [[ ${#files[@]} -eq 0 ]]; then
  echo "no certificates in $* (*.crt, *.cer, *.pem): the Russian Trusted Root CA is not added"
  exit 0
fi

mkdir -p "$CA_DIR"
for f in "${files[@]}"; do
  name="$(basename "$f" | tr '[:upper:]' '[:lower:]')"
  name="${name%.*}"
  name="${name%_pem}.crt"
  # DER (binary) or PEM in, PEM out: update-ca-certificates reads PEM only. Python is in the image
  # already; openssl may not be.
  "${PYTHON:-python3}" - "$f" "$CA_DIR/$name" <<'PY'
import ssl
import sys

data = open(sys.argv[1], "rb").read()
# Refuses anything that is not a certificate (an HTML error page saved by mistake, say).
try:
    pem = data.decode("ascii") if b"-----BEGIN CERTIFICATE-----" in data else ssl.DER_cert_to_PEM_cert(data)
    ssl.create_default_context().load_verify_locations(cadata=pem)
except (ssl.SSLError, ValueError) as exc:
    sys.exit(f"{sys.argv[1]} is not a certificate (PEM or DER: {exc}); download it again from https://www.gosuslugi.ru/crt")
open(sys.argv[2], "w", encoding="ascii").write(pem)
PY
  chmod 644 "$CA_DIR/$name"
  echo "installed $f as $CA_DIR/$name"
done
$UPDATE
