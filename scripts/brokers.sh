#!/usr/bin/env bash
# Extra RabbitMQ nodes for the failover and TLS tests, beside the default node
# rabbit@localhost (127.0.0.1:5672), which this script never touches:
#
#   * a 3-node cluster amqp-rpc-c1/c2/c3@localhost, AMQP on 127.0.0.1:5681/5682/5683;
#   * amqp-rpc-tls@localhost: AMQP on 127.0.0.1:5690, AMQPS on 127.0.0.1:5691 with a test CA
#     made at start (<base>/tls), and a user amqp-rpc-client that logs in with its client
#     certificate (EXTERNAL) only.
#
#   scripts/brokers.sh start   # boots what is not running; quiet but for errors and a summary
#   scripts/brokers.sh stop    # stops these nodes (by their names) and deletes their folders
#   scripts/brokers.sh env     # export lines for the tests: eval "$(scripts/brokers.sh env)"
#
# start is idempotent: running nodes are left alone (a node whose app was stopped, e.g. by
# `rabbitmqctl stop_app` in a failover test, gets start_app); a stopped node whose folder
# still exists reboots on its data, so it rejoins the cluster by itself. Certificates are
# made afresh whenever the TLS node boots. After a failed start, run stop, then start.
#
# Environment: AMQP_RPC_NODES_DIR (base folder, default /tmp/amqp-rpc-nodes; the rabbitmq
# user must be able to reach it), AMQP_RPC_BROKERS_TIMEOUT (seconds a node may take to
# boot, default 120).
set -euo pipefail

export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
say() { echo "brokers.sh: $*" >&2; }

base="${AMQP_RPC_NODES_DIR:-/tmp/amqp-rpc-nodes}"
# The nodes run with another working directory (the Debian wrapper cds to /var/lib/rabbitmq),
# so every path written into their config must be absolute.
[[ "$base" == /* ]] || base="$PWD/$base"
tls_dir="$base/tls"
boot_timeout="${AMQP_RPC_BROKERS_TIMEOUT:-120}"

cluster=(amqp-rpc-c1 amqp-rpc-c2 amqp-rpc-c3)
tls_node=amqp-rpc-tls
declare -A port=([amqp-rpc-c1]=5681 [amqp-rpc-c2]=5682 [amqp-rpc-c3]=5683 [amqp-rpc-tls]=5690)
tls_port=5691

# rabbitmq-server and rabbitmqctl switch to the rabbitmq user themselves, but only from root.
sudo=()
if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi
ctl() { "${sudo[@]}" rabbitmqctl -q "$@"; }
# Some commands log harmless errors (join_cluster: "Failed to create a tracked connection
# table ... node_not_running"): show a command's output only when it fails.
quiet() {
  local out
  out="$("$@" 2>&1)" || { say "failed: $*"$'\n'"$out"; return 1; }
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- env ------------------------------------------------------------------------------------
print_env() {
  local n urls=() names=() ports=()
  for n in "${cluster[@]}"; do
    urls+=("guest:guest@127.0.0.1:${port[$n]}")
    names+=("$n@localhost")
    ports+=("${port[$n]}")
  done
  echo "export AMQP_RPC_CLUSTER_URL=rabbit://$(IFS=,; echo "${urls[*]}")/"
  echo "export AMQP_RPC_CLUSTER_NODES=\"${names[*]}\""
  echo "export AMQP_RPC_CLUSTER_PORTS=\"${ports[*]}\""
  echo "export AMQP_RPC_TLS_NODE=$tls_node@localhost"
  echo "export AMQP_RPC_TLS_PORT=$tls_port"
  echo "export AMQP_RPC_TLS_PLAIN_PORT=${port[$tls_node]}"
  echo "export AMQP_RPC_TLS_DIR=$(printf %q "$tls_dir")"
}

# ---- certificates ---------------------------------------------------------------------------
# EC P-256 keys (instant to make; genpkey writes PKCS#8 "BEGIN PRIVATE KEY", which rustls
# reads), SHA-256, valid 3 days. The server's only SAN is DNS:localhost, deliberately: a
# client that checks the name 127.0.0.1 must refuse it.
make_certs() {
  rm -rf "$tls_dir"
  mkdir -p -m 755 "$tls_dir"
  local d="$tls_dir" cnf="$tls_dir/extensions.cnf"
  # Our own config, not the system openssl.cnf, so the extensions are exactly these.
  cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  local key=(openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256)
  local n
  for n in ca server client other-ca; do "${key[@]}" -out "$d/$n.key"; done
  openssl req -x509 -config "$cnf" -extensions ca -key "$d/ca.key" -sha256 -days 3 \
    -subj "/CN=amqp-rpc test CA" -out "$d/ca.pem"
  openssl req -x509 -config "$cnf" -extensions ca -key "$d/other-ca.key" -sha256 -days 3 \
    -subj "/CN=amqp-rpc other test CA" -out "$d/other-ca.pem"
  rm "$d/other-ca.key" # nothing is ever signed with it
  for n in server client; do
    local cn=localhost
    [[ $n == client ]] && cn=amqp-rpc-client
    openssl req -new -config "$cnf" -key "$d/$n.key" -subj "/CN=$cn" |
      openssl x509 -req -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -sha256 -days 3 -extfile "$cnf" -extensions "$n" -out "$d/$n.pem" 2>/dev/null
  done
  chmod 644 "$d"/*.pem
}

# ---- one node -------------------------------------------------------------------------------
node_env() { # the RABBITMQ_* variables of node $1 (folder $base/$1)
  local n="$1" dir="$base/$1"
  echo "RABBITMQ_NODENAME=$n@localhost"
  echo "RABBITMQ_DIST_PORT=$((port[$n] + 20000))"
  # /etc/rabbitmq/rabbitmq.conf pins 127.0.0.1:5672: each node needs its own config file.
  echo "RABBITMQ_CONFIG_FILE=$dir/rabbitmq"
  echo "RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins"
  echo "RABBITMQ_FEATURE_FLAGS_FILE=$dir/feature_flags"
  echo "RABBITMQ_MNESIA_BASE=$dir/mnesia"
  echo "RABBITMQ_LOG_BASE=$dir/log"
  echo "RABBITMQ_PID_FILE=$dir/pid"
  # A node that fails at boot writes erl_crash.dump into its working directory, but the
  # Debian wrapper (/usr/sbin/rabbitmq-server) cds to /var/lib/rabbitmq, the default node's.
  echo "ERL_CRASH_DUMP=$dir/erl_crash.dump"
}

write_config() { # the rabbitmq.conf of node $1
  local n="$1" dir="$base/$1"
  if [[ $n != "$tls_node" ]]; then
    echo "listeners.tcp.local = 127.0.0.1:${port[$n]}"
    return
  fi
  cat <<EOF
listeners.tcp.local = 127.0.0.1:${port[$n]}
listeners.ssl.local = 127.0.0.1:$tls_port
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.pem
ssl_options.keyfile = $dir/server.key
ssl_options.verify = verify_peer
# Clients without a certificate still log in with PLAIN/AMQPLAIN.
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
EOF
}

launch() { # boots node $1 in the background (rabbitmq-server -detached returns at once)
  local n="$1" dir="$base/$1" out
  "${sudo[@]}" mkdir -p "$dir"
  write_config "$n" | "${sudo[@]}" tee "$dir/rabbitmq.conf" >/dev/null
  if [[ $n == "$tls_node" ]]; then
    echo '[rabbitmq_auth_mechanism_ssl].'
    # The node's own copies, owned by rabbitmq like the rest of its folder.
    "${sudo[@]}" cp "$tls_dir/ca.pem" "$tls_dir/server.pem" "$tls_dir/server.key" "$dir/"
  else
    echo '[].'
  fi | "${sudo[@]}" tee "$dir/enabled_plugins" >/dev/null
  "${sudo[@]}" rm -f "$dir/erl_crash.dump"
  # The node writes everything in its folder as rabbitmq, or dies at boot.
  "${sudo[@]}" chown -R rabbitmq:rabbitmq "$dir"
  # Checked: a node that cannot write its folder dies without a log, and await_node would
  # wait in vain.
  "${sudo[@]}" runuser -u rabbitmq -- test -w "$dir" ||
    { say "user rabbitmq cannot write $dir: pick an AMQP_RPC_NODES_DIR it can reach"; return 1; }
  local vars
  mapfile -t vars < <(node_env "$n")
  # (The cd is for a rabbitmq-server that keeps the caller's directory; see ERL_CRASH_DUMP.)
  out="$(cd "$dir" && "${sudo[@]}" env "${vars[@]}" rabbitmq-server -detached 2>&1)" || {
    say "rabbitmq-server failed for $n@localhost: $out"
    return 1
  }
}

await_node() { # waits for node $1 to finish booting; on failure prints why
  local n="$1" dir="$base/$1" pid deadline=$((SECONDS + boot_timeout))
  # Right after -detached the node may not be registered yet, and await_startup then fails
  # at once instead of waiting: retry, but give up as soon as the node's process is gone.
  until ctl -n "$n@localhost" await_startup --timeout $((deadline - SECONDS + 1)) >/dev/null 2>&1; do
    pid="$("${sudo[@]}" cat "$dir/pid" 2>/dev/null || true)"
    if [[ -e "$dir/erl_crash.dump" || (-n "$pid" && ! -d "/proc/$pid") ]]; then
      say "$n@localhost died while booting; last lines of its log:"
    elif ((SECONDS >= deadline)); then
      say "$n@localhost did not boot within ${boot_timeout}s; last lines of its log:"
    else
      sleep 1
      continue
    fi
    "${sudo[@]}" sh -c 'tail -n 25 "$1"/log/*@localhost.log; grep -m1 "^Slogan" "$1"/erl_crash.dump' \
      sh "$dir" >&2 2>/dev/null || true
    return 1
  done
}

add_tls_user() {
  # A user without password: only its client certificate (EXTERNAL, CN) logs it in.
  local tls=(-n "$tls_node@localhost") out
  # (It already exists when the node rebooted on its data.)
  out="$(ctl "${tls[@]}" add_user amqp-rpc-client "$(openssl rand -hex 16)" 2>&1)" ||
    [[ $out == *already\ exists* ]] || { say "add_user failed: $out"; return 1; }
  quiet ctl "${tls[@]}" clear_password amqp-rpc-client
  quiet ctl "${tls[@]}" set_permissions -p / amqp-rpc-client '.*' '.*' '.*'
}

# ---- start / stop ---------------------------------------------------------------------------
start() {
  local n registered running booted=() pids=() failed=0 i t0=$SECONDS
  for n in rabbitmq-server rabbitmqctl openssl epmd; do
    command -v "$n" >/dev/null || { say "$n not found (scripts/setup.sh installs RabbitMQ)"; exit 1; }
  done
  mkdir -p -m 755 "$base"
  # Registered with epmd = the node's Erlang VM is running.
  registered="$(epmd -names 2>/dev/null || true)"
  for n in "${cluster[@]}" "$tls_node"; do
    if grep -q "^name $n at port" <<<"$registered"; then
      # Running node: left alone, unless its app was stopped (AMQP port closed).
      port_open "${port[$n]}" || quiet ctl -n "$n@localhost" start_app
      continue
    fi
    # The TLS node last, so its certificates are made while the cluster nodes boot.
    if [[ $n == "$tls_node" ]]; then make_certs; fi
    launch "$n"
    booted+=("$n")
  done
  # All nodes boot at once; wait for each.
  for n in "${booted[@]}"; do
    await_node "$n" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  ((failed == 0)) || exit 1

  # The TLS node's user is set up while the cluster forms.
  local tls_pid=
  if [[ " ${booted[*]} " == *" $tls_node "* ]]; then
    add_tls_user &
    tls_pid=$!
  fi
  # c2 and c3 join c1 unless c1 already lists them (a node rebooted on its data rejoins).
  running="$(ctl -n "${cluster[0]}@localhost" cluster_status --formatter json)"
  running="$(grep -o '"running_nodes":\[[^]]*\]' <<<"$running")"
  for n in "${cluster[@]:1}"; do
    [[ $running == *"\"$n@localhost\""* ]] && continue
    quiet ctl -n "$n@localhost" stop_app
    quiet ctl -n "$n@localhost" join_cluster "${cluster[0]}@localhost"
    quiet ctl -n "$n@localhost" start_app
  done
  if [[ -n $tls_pid ]]; then wait "$tls_pid"; fi

  # Check the result rather than trust the steps.
  running="$(ctl -n "${cluster[0]}@localhost" cluster_status --formatter json)"
  running="$(grep -o '"running_nodes":\[[^]]*\]' <<<"$running")"
  for n in "${cluster[@]}"; do
    [[ $running == *"\"$n@localhost\""* ]] || { say "$n@localhost is not running in the cluster: $running"; failed=1; }
  done
  for n in "${cluster[@]}" "$tls_node"; do
    port_open "${port[$n]}" || { say "nothing listens on 127.0.0.1:${port[$n]} ($n)"; failed=1; }
  done
  port_open "$tls_port" || { say "nothing listens on 127.0.0.1:$tls_port (TLS)"; failed=1; }
  ((failed == 0)) || exit 1
  echo "brokers.sh: up in $((SECONDS - t0))s: cluster ${cluster[*]} (127.0.0.1:5681-5683)," \
    "$tls_node (127.0.0.1:${port[$tls_node]}, TLS $tls_port; certificates in $tls_dir)"
}

stop() {
  local n dir pid pid_file registered
  registered="$(epmd -names 2>/dev/null || true)"
  for n in "${cluster[@]}" "$tls_node"; do
    grep -q "^name $n at port" <<<"$registered" || continue
    # With the pid file, stop waits until the node's process has exited (a node stopped
    # early in its boot may not have written it yet).
    pid_file="$base/$n/pid"
    [[ -e $pid_file ]] || pid_file=
    ctl -n "$n@localhost" stop ${pid_file:+"$pid_file"} >/dev/null 2>&1 &
  done
  wait
  for n in "${cluster[@]}" "$tls_node"; do
    dir="$base/$n"
    # A node that would not stop (or whose VM is still up but unreachable): its own pid only.
    pid="$("${sudo[@]}" cat "$dir/pid" 2>/dev/null || true)"
    if [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]]; then
      "${sudo[@]}" kill -KILL "$pid" 2>/dev/null || true
    fi
    "${sudo[@]}" rm -rf "$dir"
  done
  rm -rf "$tls_dir"
  rmdir "$base" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
