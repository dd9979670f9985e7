#!/usr/bin/env bash
# Everything the test suite needs besides Python packages, started for real (run as root):
# a Docker engine with a local Python base image, and Debian's Chromium for the browser tests.
# Idempotent; `bash .ci/docker.sh stop` stops the engine it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/docker.sh
bash .ci/browser.sh
