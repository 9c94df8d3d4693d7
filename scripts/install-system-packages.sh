#!/usr/bin/env bash
# Debian packages the test suite runs for real: zsh and fish (snippets), tmux (interactive Claude Code), Chromium (pages),
# Node.js/npm (the Claude Code CLI), PostgreSQL (the second database of CI), and dash, curl and wget (the live-key
# installer and helper run in dash with curl, and with wget only).
set -euo pipefail
packages=(zsh fish tmux chromium postgresql nodejs npm dash curl wget)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# nodejs/npm may come from elsewhere (e.g. NodeSource): a working npm is enough.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Missing system packages: ${missing[*]}. Install them (Debian: sudo apt-get install ${missing[*]}) and run again." >&2
  exit 1
fi
echo "Installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
