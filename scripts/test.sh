#!/usr/bin/env bash
# The project's full test command: set-up (scripts/setup.sh), the extra RabbitMQ nodes of the
# cluster and TLS tests (scripts/brokers.sh), then `cargo test --workspace` against a fresh
# RabbitMQ vhost; the vhost is deleted and the extra nodes stopped afterwards, also on failure
# or interrupt. AMQP_RPC_EXTRA_NODES=0 leaves the extra nodes out (their tests then say
# SKIPPED).
#
#   scripts/test.sh [cargo test arguments...]     e.g. scripts/test.sh --test it -- interop_oslo::
#
# The tests that need RabbitMQ are #[ignore]d (plain `cargo test` reports them as ignored);
# this script adds --include-ignored. Exports for the tests:
# AMQP_RPC_TEST_URL=rabbit://guest:guest@127.0.0.1:5672/<vhost>, AMQP_RPC_TEST_VHOST=<vhost>,
# REQUIRE_BROKER=1,
# AMQP_RPC_PYTHON=<repo>/.venv/bin/python (the oslo.messaging interop peer's interpreter), and
# with the extra nodes what `scripts/brokers.sh env` prints, and REQUIRE_EXTRA_NODES=1.
# Exit status: cargo's (130/143 when interrupted).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# shellcheck source-path=SCRIPTDIR source=setup.sh
source "$repo/scripts/setup.sh"

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
ctl=(rabbitmqctl -q)
if [[ "$(id -u)" -ne 0 ]]; then ctl=(sudo rabbitmqctl -q); fi

vhost="amqp-rpc-test-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

extra_nodes="${AMQP_RPC_EXTRA_NODES:-1}"

# shellcheck disable=SC2317 # invoked by the traps
cleanup() {
  trap - EXIT INT TERM HUP
  "${ctl[@]}" delete_vhost "$vhost" >/dev/null 2>&1 ||
    echo "test.sh: could not delete RabbitMQ vhost $vhost" >&2
  if [[ "$extra_nodes" != 0 ]]; then
    bash "$repo/scripts/brokers.sh" stop ||
      echo "test.sh: could not stop the extra RabbitMQ nodes" >&2
  fi
}
trap cleanup EXIT
# On a signal: run the EXIT trap (vhost cleanup) and exit with the shell's usual status.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

"${ctl[@]}" add_vhost "$vhost" >/dev/null
"${ctl[@]}" set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null

if [[ "$extra_nodes" != 0 ]]; then
  bash "$repo/scripts/brokers.sh" start
  eval "$(bash "$repo/scripts/brokers.sh" env)"
  export REQUIRE_EXTRA_NODES=1
fi

export AMQP_RPC_TEST_VHOST="$vhost"
export AMQP_RPC_TEST_URL="rabbit://guest:guest@127.0.0.1:5672/$vhost"
export REQUIRE_BROKER=1

# Tests that need RabbitMQ are #[ignore]d, so that plain `cargo test` reports them as ignored;
# here they run with the rest.
args=("$@")
has_separator=0
for arg in "${args[@]}"; do
  if [[ "$arg" == "--" ]]; then has_separator=1; fi
done
if [[ "$has_separator" == 1 ]]; then
  args+=(--include-ignored)
else
  args+=(-- --include-ignored)
fi

status=0
cargo test --workspace "${args[@]}" || status=$?
exit "$status"
