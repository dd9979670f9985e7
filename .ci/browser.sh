#!/usr/bin/env bash
# What the JupyterLab browser tests need: Debian's Chromium, which Playwright drives through
# executable_path=/usr/bin/chromium (`playwright install` downloads a browser and cannot work here),
# and a font for its text. Node.js, which builds the JupyterLab extension, is on the machine image.
set -euo pipefail
if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-dejavu-core >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
fi
command -v node >/dev/null || { echo "node is needed to build the JupyterLab extension" >&2; exit 1; }
echo "browser: $(/usr/bin/chromium --version 2>/dev/null | head -n 1); node $(node --version)"
