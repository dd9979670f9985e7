#!/usr/bin/env bash
# Java 17+ for Spark (pyspark starts a JVM): Debian's headless JRE when no java is on the PATH.
set -euo pipefail
if ! command -v java >/dev/null 2>&1; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jre-headless
fi
echo "java: $(java -version 2>&1 | head -n 1)"
