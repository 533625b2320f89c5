# shellcheck shell=bash
# The servers of tests/perf/run.sh: how each one is configured, started and
# stopped. All listen on 127.0.0.1 only; every one but NSD runs on SERVER_CPU.
#   nsd       :5300  authoritative for bench.test (the upstream), on AUTH_CPU
#   unbound   :5301  forward-zone "." -> NSD, iterator only, 1 thread
#   dnsdist   :5302  packet cache (1M entries), backend NSD
#   heimdall  :5305  --upstream NSD, 1 UDP worker
#   heimdall-base :5306  the same, another binary (BASE_HEIMDALL_BIN): a baseline
#                    for before/after comparisons in one run
#   reflector :5310  C program that echoes each query as NODATA (no DNS logic):
#                    the physical limit of this machine's UDP path and dnsperf
# Configured at their best for one core as found in the lab: no enlarged socket
# buffers for Unbound and dnsdist (they made them slower here), big caches, no logging.
# Heimdall runs its defaults, which ask for a 1 MiB receive buffer (dns.udp_recv_buffer);
# the reflector asks for 4 MiB.

srv_port() {
  case $1 in
    nsd) echo 5300 ;; unbound) echo 5301 ;; dnsdist) echo 5302 ;;
    heimdall) echo 5305 ;; heimdall-base) echo 5306 ;; reflector) echo 5310 ;; *) die "unknown server $1" ;;
  esac
}
srv_pid() { cat "$RUN/$1.pid" 2>/dev/null || echo 0; }

start_bg() { # start_bg NAME CPU cmd... : start a foreground daemon, remember its pid
  local name=$1 cpu=$2; shift 2
  local pre=(env)   # an external command first, so that $! is the server's own pid
  [ -n "$NICE" ] && pre+=(nice -n "$NICE")
  [ -n "$cpu" ] && pre+=(taskset -c "$cpu")
  echo "=== $(date -Is) round $ROUND: $*" >>"$OUT/logs/$name.log"
  "${pre[@]}" "$@" >>"$OUT/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

descendants() { # descendants PID: PID's process tree, PID first (NSD forks twice)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { id = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " "); ppid[id] = f[2] }
    END { print root; for (id in ppid) for (p = ppid[id]; p > 1; p = ppid[p]) if (p == root) { print id; break } }'
}

stop_server() { # TERM the server, wait up to 5 s for its whole tree to exit, then KILL what is left
  local name=$1 pid tree p
  pid=$(srv_pid "$name")
  if [ "$pid" != 0 ] && kill -0 "$pid" 2>/dev/null; then
    tree=$(descendants "$pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      for p in $tree; do kill -0 "$p" 2>/dev/null && break; p=""; done
      [ -z "$p" ] && break
      sleep 0.1
    done
    if [ -n "$p" ]; then   # timed out: KILL the tree's processes that are still there
      for p in $tree; do kill -9 "$p" 2>/dev/null || true; done
    fi
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
}

wait_dns() { # wait_dns PORT TIMEOUT_S [PID]: until the port answers a query (NOERROR); fails if PID exits
  local port=$1 t=$2 pid=${3:-} i=0
  while [ $i -lt $((t * 5)) ]; do
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null && return 1
    dig +tries=1 +time=1 -p "$port" @127.0.0.1 "i1.$ZONE" A 2>/dev/null | grep -q 'status: NOERROR' && return 0
    sleep 0.2; i=$((i + 1))
  done
  return 1
}

start_server() { # start_server NAME: fresh instance (cold cache)
  local name=$1
  stop_server "$name"
  "start_$name"
  wait_dns "$(srv_port "$name")" 120 "$(srv_pid "$name")" \
    || { tail -5 "$OUT/logs/$name.log" >&2; die "$name did not start or does not answer (log: $OUT/logs/$name.log)"; }
}

start_nsd() {
  local d="$RUN/nsd"; mkdir -p "$d"
  cat >"$d/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$(srv_port nsd)
  port: $(srv_port nsd)
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonesdir: "$DATA"
  zonelistfile: "$d/zone.list"
  xfrdfile: "$d/xfrd.state"
  xfrdir: "$d"
  pidfile: "$d/nsd.pid"
  verbosity: 0
  hide-version: yes
  minimal-responses: yes
  # response-rate-limiting is on by default: with every query from 127.0.0.1
  # it would drop answers of the miss runs
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  tcp-count: 100
remote-control:
  control-enable: no
zone:
  name: "$ZONE"
  zonefile: "$DATA/$ZONE.zone"
CONF
  nsd-checkconf "$d/nsd.conf"
  start_bg nsd "$AUTH_CPU" nsd -d -c "$d/nsd.conf"
}

start_unbound() {
  local d="$RUN/unbound"; mkdir -p "$d"
  cat >"$d/unbound.conf" <<CONF
server:
  interface: 127.0.0.1@$(srv_port unbound)
  port: $(srv_port unbound)
  do-ip6: no
  num-threads: 1
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$d"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  statistics-interval: 0
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"        # a forwarding cache: no DNSSEC validation
  local-zone: "test." nodefault    # .test is an RFC 6761 local zone by default
  qname-minimisation: no
  prefetch: no
  minimal-responses: yes
  msg-cache-size: 128m
  rrset-cache-size: 256m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  incoming-num-tcp: 100
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$(srv_port nsd)
CONF
  unbound-checkconf "$d/unbound.conf" >/dev/null
  start_bg unbound "$SERVER_CPU" unbound -d -c "$d/unbound.conf"
}

start_dnsdist() {
  local d="$RUN/dnsdist"; mkdir -p "$d"
  cat >"$d/dnsdist.conf" <<CONF
setSecurityPollSuffix('')   -- no security-poll queries
setACL({'127.0.0.0/8'})
addLocal('127.0.0.1:$(srv_port dnsdist)', {doTCP=true})
local s = newServer({address='127.0.0.1:$(srv_port nsd)', name='nsd', checkName='$ZONE.', checkType='SOA', checkInterval=60})
s:setUp()                   -- always up: no dependency on health checks
pc = newPacketCache(1000000, {maxTTL=86400, minTTL=0, temporaryFailureTTL=60, staleTTL=60, dontAge=false})
getPool(''):setCache(pc)
setMaxTCPClientThreads(1)   -- one core: one TCP worker
CONF
  dnsdist --check-config -C "$d/dnsdist.conf" >/dev/null
  start_bg dnsdist "$SERVER_CPU" dnsdist --supervised --disable-syslog -C "$d/dnsdist.conf"
}

start_heimdall() { # start_heimdall [NAME BINARY]: heimdall, or another binary as NAME
  local name=${1:-heimdall} bin=${2:-$HEIMDALL_BIN} port
  port=$(srv_port "$name")
  local d="$RUN/$name-data"; rm -rf "$d"; mkdir -p "$d"
  # cache as large as Unbound's (msg 128m + rrset 256m): no evictions in miss runs.
  # (env -u: Heimdall reads every HEIMDALL_* variable as configuration, and rejects this one)
  HEIMDALL_CACHE__MAX_BYTES=${HEIMDALL_CACHE__MAX_BYTES:-402653184} \
  HEIMDALL_LOG__LEVEL=${HEIMDALL_LOG__LEVEL:-warn} \
    start_bg "$name" "$SERVER_CPU" env -u HEIMDALL_BIN "$bin" --dns-listen "127.0.0.1:$port" \
      --upstream "127.0.0.1:$(srv_port nsd)" --workers 1 --data-dir "$d" \
      --metrics-listen "127.0.0.1:$((port + 4000))" --grpc-listen "127.0.0.1:$((port + 45000))" \
      --gossip-listen "127.0.0.1:$((port + 2000))"   # own ports: two Heimdalls may run side by side
}

start_heimdall-base() { # the baseline binary (BASE_HEIMDALL_BIN), same settings
  [ -x "${BASE_HEIMDALL_BIN:-}" ] || die "server heimdall-base needs BASE_HEIMDALL_BIN (an executable heimdall)"
  start_heimdall heimdall-base "$BASE_HEIMDALL_BIN"
}

build_reflector() {
  local b="$RUN/reflector"
  gcc -O2 -Wall -o "$b" "$PERF_DIR/reflector.c"
}

start_reflector() { # recvmmsg/sendmmsg, batch 32 (the lab's fastest)
  start_bg reflector "$SERVER_CPU" "$RUN/reflector" "$(srv_port reflector)" 32 86400
}

stop_all() {
  local f
  for f in "$RUN"/*.pid; do [ -f "$f" ] && stop_server "$(basename "$f" .pid)"; done
  return 0
}
