#!/usr/bin/env bash
# Everything the test suite needs besides Python packages, started for real (run as root):
# a Docker engine with a local Python base image, Debian's Chromium for the browser tests, Java for
# Spark (nb2prod score --engine spark), Prometheus (promtool and the server) for the monitoring rules,
# and Apache Airflow in its own virtual environment.
# Idempotent; `bash .ci/docker.sh stop` stops the engine it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/docker.sh
bash .ci/browser.sh
bash .ci/java.sh  # Spark local[2] in tests/scale/test_spark.py
bash .ci/prometheus.sh  # promtool and a Prometheus server for tests/deploy/test_monitoring_rules.py
bash .ci/airflow.sh >/dev/null  # Airflow in its own venv for tests/deploy/test_airflow.py (cached)
