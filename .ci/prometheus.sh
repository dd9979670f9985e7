#!/usr/bin/env bash
# Prometheus 2 from Debian (the server and promtool) for tests/deploy/test_monitoring_rules.py:
# `promtool check rules` / `promtool test rules` on the generated alerting rules, and a real
# Prometheus server on 127.0.0.1 scraping `nb2prod serve`. The tests start their own server with
# their own config and data folder; the package's system service is not used.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
fi
echo "promtool: $(promtool --version 2>&1 | head -n 1)"
