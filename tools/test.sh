#!/usr/bin/env bash
# The test suite, from a fresh machine: makes sure RabbitMQ answers on 127.0.0.1:5672 (starting it when it does
# not), installs the OASIS STIX validator in a virtualenv under target/ (once per requirements), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

rabbitmq_answers() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if ! rabbitmq_answers; then
  echo "RabbitMQ is not answering on 127.0.0.1:5672: starting it with 'rabbitmq-server -detached'" >&2
  if ! command -v rabbitmq-server >/dev/null; then
    echo "error: rabbitmq-server is not installed; install RabbitMQ (Debian: apt-get install rabbitmq-server)" >&2
    exit 1
  fi
  rabbitmq-server -detached
  for _ in $(seq 1 90); do
    rabbitmq_answers && break
    sleep 1
  done
  if ! rabbitmq_answers; then
    echo "error: RabbitMQ did not start within 90 s (see /var/log/rabbitmq/)" >&2
    exit 1
  fi
  # The port opens before the broker accepts logins: wait until it reports itself running.
  command -v rabbitmqctl >/dev/null && rabbitmqctl -q await_startup >/dev/null 2>&1 || true
fi

venv=target/stix-venv
requirements=tools/validate/requirements.txt
# (Re)install when the venv is missing or was made from other requirements.
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
export STIX_PYTHON="$PWD/$venv/bin/python"

cargo test --workspace --locked "$@"
