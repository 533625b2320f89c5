#!/usr/bin/env bash
# tests/perf/run.sh: Heimdall's performance benchmark against Unbound and dnsdist,
# on one machine, over 127.0.0.1 only.
#
# Method
#   * NSD serves a generated zone (bench.test: 1M A names, AAAA, CNAME, TXT) on
#     127.0.0.1:5300; Heimdall, Unbound (forwarding cache) and dnsdist (packet
#     cache) forward to it, each on its own port, one worker, all pinned to the
#     same server core (SERVER_CPU=1); dnsperf and NSD run on CLIENT_CPU=0. The C
#     reflector (reflector.c: echoes each query, no DNS logic) is the physical
#     limit of this machine's UDP path for the hit workload.
#   * Workloads (the same dnsperf query files for every server):
#       hit       10k names, 2% NXDOMAIN, warmed first: cache hits
#       zipf      names drawn from a Zipf distribution (s=ZIPF_S) over the ~1.1M
#                 names of the zone: a cold server is warmed with the stream's
#                 first ZIPF_WARM queries, then measured on the next ZIPF_QUERIES
#                 (a fixed stream, so every server answers the same queries)
#       miss      every name new, cold cache (the server is restarted first)
#       nxdomain  10k names absent from the zone, warmed: negative-cache hits
#       tcp       the hit file over TCP (dnsperf -m tcp)
#   * For each workload, two runs per server: "sat" (closed loop, dnsperf -c 4
#     -T 2 -q 200): QPS at saturation and the server's CPU seconds per million
#     queries (utime+stime from /proc/PID/stat); "fixed" (dnsperf -Q, an offered
#     load below saturation, -v): p50/p99/p99.9 latency from dnsperf's per-query
#     output (lost queries count as infinitely slow).
#   * Servers run in alternation for RUNS rounds, the order rotated each round (A B C,
#     B C A, C A B, ...); medians.
#   * Then a latency-vs-offered-load sweep of the hit workload -> latency.png.
#   * Shared machine: a quiet gate waits (QUIET_WAIT s) until foreign CPU load
#     plus steal time is < QUIET_MAX %; a run with >= NOISY_MAX % is flagged and
#     retried.
#   * Runs in a private network namespace (only lo) when it can, otherwise in
#     the root namespace; stops everything it started on exit, even on failure.
#
# Output: RESULTS dir (default tests/perf/results/<timestamp>/, copied to
#   tests/perf/results/latest/): results.md, latency.png, env.txt, summary.txt
#   (one key=value line per run), raw/ (dnsperf outputs), logs/ (server logs).
#
# Env knobs (default):
#   HEIMDALL_BIN   heimdall binary (target/release/heimdall; built if missing)
#   BASE_HEIMDALL_BIN  a second heimdall binary, run as server "heimdall-base"
#                  (add it to SERVERS) to compare two builds side by side
#   RUNS           rounds (3)            DURATION    seconds per run (8)
#   SERVERS        "heimdall unbound dnsdist reflector"
#   WORKLOADS      "hit zipf miss nxdomain tcp"
#   QPS_FIXED      offered load of the latency runs (40000); per workload:
#                  QPS_FIXED_ZIPF (10000), QPS_FIXED_MISS (5000), QPS_FIXED_TCP (20000)
#   SWEEP_QPS      "10000 20000 40000 60000" ("" = no sweep), SWEEP_DURATION (5)
#   SERVER_CPU (1)  CLIENT_CPU (0, dnsperf)  AUTH_CPU (CLIENT_CPU, NSD); "" = unpinned
#   QUICK=1        smoke test: RUNS=1 DURATION=5 SWEEP_DURATION=3, short quiet gate
#   ZONE_N (1000000)  ZIPF_S (1.0)  ZIPF_WARM (100000)  ZIPF_QUERIES (60000 x DURATION)
#   QUIET_MAX (10 %)  QUIET_WAIT (30 s)  NOISY_MAX (15 %)  MAX_TRIES (2)
#   NICE (-19)  NETNS (1; 0 = root namespace)  WORK (/tmp/heimdall-perf)  RESULTS
#   LATEST (1; 0 = leave tests/perf/results/latest, which README links to, as it is)
set -euo pipefail

PERF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$PERF_DIR/../.." && pwd)
. "$PERF_DIR/lib.sh"
. "$PERF_DIR/servers.sh"

# ------------------------------------------------------------- settings --
if [ "${QUICK:-0}" = 1 ]; then
  RUNS=${RUNS:-1} DURATION=${DURATION:-5} SWEEP_DURATION=${SWEEP_DURATION:-3}
  QUIET_WAIT=${QUIET_WAIT:-5} MAX_TRIES=${MAX_TRIES:-1}
fi
HEIMDALL_BIN=${HEIMDALL_BIN:-$REPO/target/release/heimdall}
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
SERVERS=${SERVERS:-"heimdall unbound dnsdist reflector"}
WORKLOADS=${WORKLOADS:-"hit zipf miss nxdomain tcp"}
QPS_FIXED=${QPS_FIXED:-40000}
QPS_FIXED_ZIPF=${QPS_FIXED_ZIPF:-10000}
QPS_FIXED_MISS=${QPS_FIXED_MISS:-5000}
QPS_FIXED_TCP=${QPS_FIXED_TCP:-20000}
SWEEP_QPS=${SWEEP_QPS-"10000 20000 40000 60000"}
SWEEP_DURATION=${SWEEP_DURATION:-5}
SERVER_CPU=${SERVER_CPU-1}
CLIENT_CPU=${CLIENT_CPU-0}
AUTH_CPU=${AUTH_CPU-$CLIENT_CPU}
ZONE=bench.test
ZONE_N=${ZONE_N:-1000000}
ZIPF_S=${ZIPF_S:-1.0}
ZIPF_WARM=${ZIPF_WARM:-100000}
ZIPF_QUERIES=${ZIPF_QUERIES:-$((60000 * DURATION))}
QUIET_MAX=${QUIET_MAX:-10}
QUIET_WAIT=${QUIET_WAIT:-30}
NOISY_MAX=${NOISY_MAX:-15}
MAX_TRIES=${MAX_TRIES:-2}
NICE=${NICE--19}
# dnsperf: the lab's fairest setup on 2 cores (see README)
CLIENTS=4 CTHREADS=2 OUTSTANDING=200 TIMEOUT=2
WORK=${WORK:-/tmp/heimdall-perf}
LATEST=${LATEST:-1}
DATA=$WORK/data-$ZONE_N
RUN=$WORK/run
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${RESULTS:-$PERF_DIR/results/$STAMP}
ROUND=0

# ------------------------------------------------------------ test data --

gen_zipf() { # the Zipf stream over the miss file's names (its order = popularity rank)
  ZIPF_PREFIX="$DATA/zipf-s$ZIPF_S-$ZIPF_WARM-$ZIPF_QUERIES"
  if [ ! -f "$ZIPF_PREFIX.stats" ]; then
    python3 "$PERF_DIR/zipf.py" "$DATA/miss.txt" "$ZIPF_S" "$ZIPF_WARM" "$ZIPF_QUERIES" \
      "$ZIPF_PREFIX.warm" "$ZIPF_PREFIX.run" >"$ZIPF_PREFIX.stats.tmp"
    mv "$ZIPF_PREFIX.stats.tmp" "$ZIPF_PREFIX.stats"
  fi
}

# ----------------------------------------------------------- workloads --
workload_args() { # sets QFILE, DP_EXTRA (more dnsperf flags), DP_CAP (time cap of fixed-count runs)
  DP_EXTRA=() DP_CAP=""
  case $1 in
    hit)      QFILE=$DATA/hit.txt ;;
    nxdomain) QFILE=$DATA/nxdomain.txt ;;
    tcp)      QFILE=$DATA/hit.txt; DP_EXTRA=(-m tcp) ;;
    miss)     QFILE=$DATA/miss.txt; DP_EXTRA=(-n 1) ;;
    zipf)     QFILE=$ZIPF_PREFIX.run; DP_EXTRA=(-n 1); DP_CAP=$((DURATION * 4)) ;;
    *) die "unknown workload $1" ;;
  esac
}

fixed_qps() {
  case $1 in
    zipf) echo "$QPS_FIXED_ZIPF" ;; miss) echo "$QPS_FIXED_MISS" ;;
    tcp) echo "$QPS_FIXED_TCP" ;; *) echo "$QPS_FIXED" ;;
  esac
}

applies() { # the reflector only answers the UDP hit workload (it has no cache and no TCP)
  [ "$1" != reflector ] || [ "$2" = hit ]
}

dnsperf_pass() { # dnsperf_pass SERVER FILE: one unmeasured pass over FILE (warm-up)
  pinned "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$(srv_port "$1")" -d "$2" -c "$CLIENTS" -T "$CTHREADS" \
    -q "$OUTSTANDING" -t "$TIMEOUT" -n 1 -l 60 >"$RUN/warm.out" 2>&1 || true
}

declare -A WARMED=()
prepare() { # prepare SERVER WORKLOAD: warm cache (hit, nxdomain, tcp) or fresh instance (zipf, miss)
  local s=$1 w=$2 f
  case $w in
    hit|tcp|nxdomain)
      [ "$w" = nxdomain ] && f=$DATA/nxdomain.txt || f=$DATA/hit.txt
      if [ -z "${WARMED[$s:$f]:-}" ] && [ "$s" != reflector ]; then
        dnsperf_pass "$s" "$f"; dnsperf_pass "$s" "$f"   # twice: a lost warm-up query stays a miss
        WARMED[$s:$f]=1
      fi ;;
    miss) start_server "$s" ;;
    zipf) start_server "$s"; dnsperf_pass "$s" "$ZIPF_PREFIX.warm" ;;
  esac
}

measure_retry() { # measure_retry SERVER WORKLOAD MODE [QPS]: retried while the run was noisy
  local try
  for try in $(seq "$MAX_TRIES"); do
    prepare "$1" "$2"
    measure "$@" && return 0
    [ "$try" -lt "$MAX_TRIES" ] && log "  noisy run: retrying"
  done
  return 0
}

# Prints SERVERS rotated left by (ROUND - 1): round 1 runs A B C, round 2 B C A, round 3
# C A B, so that no server is always the first (or the last) of a workload's runs.
rotated_servers() {
  local -a list; read -ra list <<<"$SERVERS"
  local n=${#list[@]} k i
  k=$(( (ROUND - 1) % n ))
  for ((i = 0; i < n; i++)); do printf '%s ' "${list[$(( (k + i) % n ))]}"; done
}

run_round() {
  log "round $ROUND of $RUNS: fresh servers, order: $(rotated_servers)"
  local s w mode order
  order=$(rotated_servers)
  WARMED=()
  for s in $SERVERS; do start_server "$s"; done
  for w in $WORKLOADS; do
    for mode in sat fixed; do
      for s in $order; do
        applies "$s" "$w" || continue
        if [ "$mode" = sat ]; then measure_retry "$s" "$w" sat; else measure_retry "$s" "$w" fixed "$(fixed_qps "$w")"; fi
      done
    done
  done
}

run_sweep() {
  [ -n "$SWEEP_QPS" ] || return 0
  case " $WORKLOADS " in *" hit "*) ;; *) return 0 ;; esac
  ROUND=sweep
  log "latency sweep (hits) at $SWEEP_QPS qps: fresh servers"
  local s q
  WARMED=()
  for s in $SERVERS; do start_server "$s"; done
  for q in $SWEEP_QPS; do
    for s in $SERVERS; do measure_retry "$s" hit sweep "$q"; done
  done
}

# ---------------------------------------------------------------- misc --
estimate_minutes() { # rough duration of the whole run
  local n_srv=0 n_meas=0 n_cold=0 s w
  for s in $SERVERS; do
    n_srv=$((n_srv + 1))
    for w in $WORKLOADS; do
      applies "$s" "$w" || continue
      n_meas=$((n_meas + 2))
      case $w in zipf|miss) n_cold=$((n_cold + 2)) ;; esac
    done
  done
  local n_sweep=0; [ -n "$SWEEP_QPS" ] && n_sweep=$(( $(echo "$SWEEP_QPS" | wc -w) * n_srv ))
  # per run: the run + quiet gate + parsing; cold starts: restart + zipf warm-up / slower zipf passes
  local secs=$(( RUNS * (n_meas * (DURATION + 2) + n_cold * (4 + ZIPF_WARM / 40000 + ZIPF_QUERIES / 80000) + n_srv * 3)
                 + n_sweep * (SWEEP_DURATION + 2) + 30 ))
  [ -f "$DATA/.done-v1" ] || secs=$((secs + 60))
  echo $(( (secs + 59) / 60 ))
}

check_ports_free() {
  local s p
  for s in nsd $SERVERS; do
    p=$(srv_port "$s")
    if ss -H -lun "sport = :$p" 2>/dev/null | grep -q . || ss -H -ltn "sport = :$p" 2>/dev/null | grep -q .; then
      die "port $p (for $s) is already in use"
    fi
  done
}

ensure_heimdall() {
  if [ ! -x "$HEIMDALL_BIN" ]; then
    command -v cargo >/dev/null || die "no heimdall binary at $HEIMDALL_BIN and no cargo to build it"
    log "building heimdall (cargo build --release --bin heimdall)"
    (cd "$REPO" && cargo build --release --bin heimdall) || die "build failed"
  fi
}

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "n/a"; }

write_env() {
  local commit
  commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "?")
  [ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -1)" ] && commit="$commit+dirty"
  {
    echo "date: $(date -Is)"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "netns: $PERF_IN_NETNS"
    echo "heimdall: $("$HEIMDALL_BIN" --version 2>/dev/null | head -1 | sed 's/^heimdall/Heimdall/') (commit $commit, binary $HEIMDALL_BIN built $(date -r "$HEIMDALL_BIN" +%Y-%m-%dT%H:%M))"
    [ -n "${BASE_HEIMDALL_BIN:-}" ] && echo "heimdall-base: $("$BASE_HEIMDALL_BIN" --version 2>/dev/null | head -1) (binary $BASE_HEIMDALL_BIN built $(date -r "$BASE_HEIMDALL_BIN" +%Y-%m-%dT%H:%M))"
    echo "peers: Unbound $(pkg_version unbound), dnsdist $(pkg_version dnsdist), NSD $(pkg_version nsd), dnsperf $(pkg_version dnsperf)"
    echo "server_cpu: ${SERVER_CPU:-any}"
    echo "client_cpu: ${CLIENT_CPU:-any}"
    echo "auth_cpu: ${AUTH_CPU:-any}"
    echo "nice: ${NICE:-none}"
    echo "runs: $RUNS"
    echo "duration: $DURATION"
    echo "servers: $SERVERS"
    echo "workloads: $WORKLOADS"
    echo "qps_fixed: hit/nxdomain $QPS_FIXED, tcp $QPS_FIXED_TCP, zipf $QPS_FIXED_ZIPF, miss $QPS_FIXED_MISS"
    echo "sweep: ${SWEEP_QPS:-none} qps, $SWEEP_DURATION s each"
    echo "dnsperf: -c $CLIENTS -T $CTHREADS -q $OUTSTANDING -t $TIMEOUT"
    echo "zone: $ZONE, $ZONE_N A names (+10% AAAA, 1% CNAME, 0.1% TXT)"
    [ -n "${ZIPF_PREFIX:-}" ] && echo "zipf: $(cat "$ZIPF_PREFIX.stats")"
    echo "quiet_gate: wait up to ${QUIET_WAIT}s for foreign CPU < ${QUIET_MAX}%, noisy if >= ${NOISY_MAX}%, tries $MAX_TRIES"
    echo "quick: ${QUICK:-0}"
  } >"$OUT/env.txt"
}

cleanup() {
  local rc=$?
  trap - EXIT
  stop_all
  rm -f "$RUN"/*.out "$RUN"/lat.txt "$RUN"/f[0-9] "$RUN"/fg[0-9]
  [ "$rc" = 0 ] || log "stopped (exit $rc); partial results in $OUT"
  exit "$rc"
}

main() {
  mkdir -p "$WORK" "$RUN"
  install_missing            # (before entering the network namespace: apt needs the network)
  ensure_heimdall
  enter_netns "$@"           # re-executes this script in a private netns, if it can
  ROOT_PID=$$
  pick_nice
  mkdir -p "$OUT/raw" "$OUT/logs"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  check_ports_free
  local t0=$SECONDS
  log "results -> $OUT; expected duration ~$(estimate_minutes) min (RUNS=$RUNS DURATION=${DURATION}s, $SERVERS)"
  gen_data
  case " $WORKLOADS " in *" zipf "*) gen_zipf ;; esac
  write_env
  build_reflector
  log "starting NSD (loading the zone)"
  start_server nsd
  for ROUND in $(seq "$RUNS"); do run_round; done
  run_sweep
  stop_all
  python3 "$PERF_DIR/report.py" "$OUT" >/dev/null
  if ls "$OUT"/sweep-*.dat >/dev/null 2>&1; then
    local noisy; noisy=$(grep -c 'mode=sweep.*noisy=1' "$OUT/summary.txt" || true)
    [ "$noisy" -gt 0 ] && noisy="NOISY: $noisy sweep runs had foreign CPU load" || noisy=""
    gnuplot -e "dir='$OUT'; servers='$SERVERS'; note='$noisy'" "$PERF_DIR/plot.gp" || log "warning: plot failed"
  fi
  if [ "$LATEST" = 1 ]; then
    mkdir -p "$PERF_DIR/results" && rm -rf "$PERF_DIR/results/latest" && cp -r "$OUT" "$PERF_DIR/results/latest"
  fi
  cat "$OUT/results.md"
  log "done in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s: $OUT/results.md$([ "$LATEST" = 1 ] && echo " (copy in $PERF_DIR/results/latest)")"
}

main "$@"
