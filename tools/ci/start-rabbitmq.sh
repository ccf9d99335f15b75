#!/usr/bin/env bash
# GitHub Actions: RabbitMQ in a container on the host network (127.0.0.1:5672), so that tools/test.sh finds it
# answering and starts none, with a `rabbitmqctl` on PATH that runs the container's.
#
#   tools/ci/start-rabbitmq.sh rabbitmq:4-management
#
# Not a `services:` container: those are reached through Docker's port proxy, so the broker would not see the tests'
# own client ports, which testkit's RabbitMQ helpers match (`rabbitmqctl list_connections peer_port`) to cut only
# their own connections. On the host network it does. The node name is pinned to localhost, which always resolves.
set -euo pipefail

image=${1:?usage: $0 IMAGE (e.g. rabbitmq:4-management)}

docker run --detach --name rabbitmq --network host \
  --env RABBITMQ_NODENAME=rabbit@localhost \
  --health-cmd 'rabbitmq-diagnostics -q check_port_connectivity' \
  --health-interval 5s --health-timeout 10s --health-retries 30 \
  "$image"

status() { docker inspect --format '{{.State.Health.Status}}' rabbitmq; }
for _ in $(seq 1 90); do
  [ "$(status)" = healthy ] && break
  sleep 2
done
if [ "$(status)" != healthy ]; then
  docker logs rabbitmq
  echo "error: RabbitMQ ($image) did not become healthy within 3 minutes" >&2
  exit 1
fi
docker exec rabbitmq rabbitmqctl version

bin="${RUNNER_TEMP:?not on a GitHub runner}/bin"
mkdir -p "$bin"
printf '#!/bin/sh\nexec docker exec rabbitmq rabbitmqctl "$@"\n' > "$bin/rabbitmqctl"
chmod +x "$bin/rabbitmqctl"
echo "$bin" >> "${GITHUB_PATH:?not on a GitHub runner}"
