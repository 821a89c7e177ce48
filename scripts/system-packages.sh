#!/usr/bin/env bash
# Install the Debian packages the app needs (packages.txt: Tesseract OCR with Russian and English)
# and, with --dev, those the tests need (packages-dev.txt). Only where apt-get can run; elsewhere
# say what to install by hand. Text files work without Tesseract; images and scans need it.
set -uo pipefail
cd "$(dirname "$0")/.."

lists=(packages.txt)
[ "${1:-}" = "--dev" ] && lists+=(packages-dev.txt)
wanted=$(cat "${lists[@]}" | grep -v '^\s*#' | grep -v '^\s*$' | tr '\n' ' ')

missing=""
for pkg in $wanted; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -z "$missing" ] && exit 0

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  fi
  if [ "$SUDO" != "none" ]; then
    echo "Устанавливаю системные пакеты:$missing"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null && exit 0
  fi
fi
cat >&2 <<MSG
Не удалось установить системные пакеты:$missing
Установите их вручную, например: sudo apt-get install$missing
(macOS: brew install tesseract tesseract-lang). Без Tesseract текстовые файлы и PDF с текстом
работают, а изображения и сканы — нет.
MSG
exit 0
