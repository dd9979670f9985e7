#!/usr/bin/env bash
# Apache Airflow in its own virtual environment, for tests/deploy/test_airflow.py (`airflow dags test`
# of a rendered DAG). Created once per machine and kept in
# ${NB2PROD_TEST_CACHE:-~/.cache/nb2prod-tests}/airflow-venv-<hash of .ci/airflow-constraints.txt>, so a
# change of the pins makes a new one. Idempotent: prints the environment's folder on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
constraints="$PWD/.ci/airflow-constraints.txt"
python="${NB2PROD_AIRFLOW_PYTHON:-python3}"
hash="$(sha256sum "$constraints" | cut -c1-12)"
root="${NB2PROD_TEST_CACHE:-$HOME/.cache/nb2prod-tests}"
venv="$root/airflow-venv-$hash"
mkdir -p "$root"
exec 9>"$venv.lock"
flock 9  # one install at a time; a second caller waits and then finds it done
if [ ! -f "$venv/.complete" ]; then
  start=$(date +%s)
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --no-compile -c "$constraints" "apache-airflow==2.10.5" >&2
  "$venv/bin/airflow" version >/dev/null
  touch "$venv/.complete"
  echo "airflow: installed apache-airflow 2.10.5 into $venv in $(( $(date +%s) - start ))s" >&2
fi
echo "$venv"
