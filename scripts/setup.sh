#!/usr/bin/env bash
# Prepares this machine for the test suite; idempotent and quiet when nothing is missing.
#
#   * RabbitMQ: installs the Debian package if absent, starts the node if it is down and
#     waits for it to finish booting (AMQP on 127.0.0.1:${RABBITMQ_NODE_PORT:-5672}).
#   * Python: <repo>/.venv with the exact pins of tests/interop/requirements.txt
#     (oslo.messaging 18.3.1), rebuilt only when missing or when requirements.txt changed.
#   * Exports AMQP_RPC_PYTHON=<repo>/.venv/bin/python.
#
# Run it (`scripts/setup.sh`) or source it (`. scripts/setup.sh`: also exports
# AMQP_RPC_PYTHON into your shell, and returns non-zero on failure). When sourced, the work
# runs in a child bash, so `set -euo pipefail` applies there and your shell's options and
# variables are left alone.
# Environment: PYTHON (base interpreter for the venv, default python3),
# AMQP_RPC_SETUP_TIMEOUT (seconds to wait for the broker to boot, default 120).

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  _amqp_rpc_source_setup() {
    local repo rc=0
    repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    bash "$repo/scripts/setup.sh" || rc=$?
    unset -f _amqp_rpc_source_setup
    if ((rc == 0)); then export AMQP_RPC_PYTHON="$repo/.venv/bin/python"; fi
    return "$rc"
  }
  _amqp_rpc_source_setup
  return
fi

set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
say() { echo "setup.sh: $*" >&2; }

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi

apt_install() {
  say "installing $* (apt-get)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ---- RabbitMQ -----------------------------------------------------------------------------
port="${RABBITMQ_NODE_PORT:-5672}"
boot_timeout="${AMQP_RPC_SETUP_TIMEOUT:-120}"

amqp_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if ! command -v rabbitmqctl >/dev/null || ! command -v rabbitmq-server >/dev/null; then
  apt_install rabbitmq-server
fi

# The broker opens its AMQP listener only at the end of its boot, so an accepting port means
# a started node: the common case costs no rabbitmqctl call at all.
if ! amqp_port_open; then
  if ! "${sudo[@]}" rabbitmqctl -q ping >/dev/null 2>&1; then
    say "starting rabbitmq-server"
    "${sudo[@]}" rabbitmq-server -detached >&2
  fi
  # Right after -detached the node may not be registered yet, and await_startup then fails
  # at once instead of waiting: retry until the deadline.
  deadline=$((SECONDS + boot_timeout))
  until "${sudo[@]}" rabbitmqctl -q await_startup --timeout "$boot_timeout" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "RabbitMQ did not finish booting within ${boot_timeout}s"
      exit 1
    fi
    sleep 1
  done
  until amqp_port_open; do
    if ((SECONDS >= deadline)); then
      say "RabbitMQ is up but nothing listens on 127.0.0.1:$port"
      exit 1
    fi
    sleep 0.2
  done
fi

# ---- Python venv --------------------------------------------------------------------------
venv="$repo/.venv"
req="$repo/tests/interop/requirements.txt"
marker="$venv/.amqp-rpc-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
# -x follows the symlink, so a venv whose base interpreter vanished counts as missing.
if [[ -x "$venv/bin/python" && -f "$marker" && "$(<"$marker")" == "$want" ]]; then
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null; then
  if [[ -n "${PYTHON:-}" ]]; then
    say "PYTHON=$PYTHON: no such interpreter"
    exit 1
  fi
  apt_install python3 python3-venv
elif ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if [[ "$(command -v "$python")" != /usr/bin/* ]]; then
    say "$python cannot create virtual environments (no venv/ensurepip module)"
    exit 1
  fi
  apt_install python3-venv # Debian splits venv/ensurepip out of python3
fi

say "creating $venv ($(grep -m1 '^oslo\.messaging==' "$req"))"
rm -f "$marker"
"$python" -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  -r "$req" >&2
"$venv/bin/python" -W ignore -c 'import oslo_messaging' # fail here rather than in the tests
echo "$want" >"$marker"
