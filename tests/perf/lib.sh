# shellcheck shell=bash
# Helpers of tests/perf/run.sh: environment set-up, CPU accounting, the quiet
# gate and one dnsperf measurement. Sourced by run.sh, which sets the knobs.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- set-up --

# Debian packages this benchmark needs, as "command:package" pairs.
NEEDED_PKGS="dnsperf:dnsperf unbound:unbound dnsdist:dnsdist nsd:nsd dig:bind9-dnsutils
gnuplot:gnuplot-nox gcc:gcc python3:python3 ss:iproute2 taskset:util-linux"

install_missing() { # apt-get install whatever is missing; no packaged daemon is left running
  local pair cmd pkg missing=()
  for pair in $NEEDED_PKGS; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}): run as root or install them"
  log "installing ${missing[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  # keep the packages' own services from starting (they would take port 53)
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy=1
  fi
  local ok=1
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$WORK/apt.log" 2>&1 || ok=0
  [ "$policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$ok" = 1 ] || { tail -20 "$WORK/apt.log"; die "apt-get install failed (log: $WORK/apt.log)"; }
  if [ -d /run/systemd/system ]; then
    local s; for s in unbound dnsdist nsd; do systemctl disable --now "$s" >/dev/null 2>&1 || true; done
  fi
  return 0
}

# The zone and the hit / nxdomain / miss query files, in $DATA (ZONE, ZONE_N; kept between runs).
gen_data() {
  [ -f "$DATA/.done-v1" ] && return 0
  log "generating the zone ($ZONE_N names) and query files in $DATA"
  mkdir -p "$DATA"
  awk -v N="$ZONE_N" -v Z="$ZONE" 'BEGIN {
    print "$ORIGIN " Z "."; print "$TTL 86400"
    print "@ IN SOA ns." Z ". hostmaster." Z ". 1 3600 600 604800 3600"
    print "@ IN NS ns." Z "."; print "ns IN A 127.0.0.1"
    for (i = 0; i < N; i++) printf "i%d IN A 198.%d.%d.%d\n", i, 18 + int(i / 65536) % 2, int(i / 256) % 256, i % 256
    for (i = 0; i < N / 10; i++) printf "i%d IN AAAA 2001:db8::%x:%x\n", i, int(i / 65536), i % 65536
    for (i = 0; i < N / 100; i++) printf "c%d IN CNAME i%d\n", i, (i * 7919) % N
    for (i = 0; i < N / 1000; i++) printf "t%d IN TXT \"bench-%d lorem ipsum dolor sit amet\"\n", i, i
  }' >"$DATA/$ZONE.zone"
  # hits: 10k distinct questions, 80% A, 10% AAAA, 5% A via CNAME, 3% TXT, 2% NXDOMAIN
  awk -v N="$ZONE_N" -v Z="$ZONE" 'BEGIN {
    for (j = 0; j < 10000; j++) { m = j % 100
      if (m < 80)      printf "i%d.%s A\n", (k[0]++ * 97) % N, Z
      else if (m < 90) printf "i%d.%s AAAA\n", (k[1]++ * 13) % int(N / 10), Z
      else if (m < 95) printf "c%d.%s A\n", k[2]++ % int(N / 100), Z
      else if (m < 98) printf "t%d.%s TXT\n", k[3]++ % int(N / 1000), Z
      else             printf "nx%d.%s A\n", k[4]++, Z }
  }' | shuf --random-source=<(yes) >"$DATA/hit.txt"
  awk -v Z="$ZONE" 'BEGIN { for (j = 0; j < 10000; j++) printf "nxd%d.%s A\n", j, Z }' >"$DATA/nxdomain.txt"
  # misses: every question distinct (~1.13M lines), same mix
  awk -v N="$ZONE_N" -v Z="$ZONE" 'BEGIN {
    for (i = 0; i < N; i++) printf "i%d.%s A\n", i, Z
    for (i = 0; i < N / 10; i++) printf "i%d.%s AAAA\n", i, Z
    for (i = 0; i < N / 100; i++) printf "c%d.%s A\n", i, Z
    for (i = 0; i < N / 1000; i++) printf "t%d.%s TXT\n", i, Z
    for (i = 0; i < N / 50; i++) printf "nx%d.miss.%s A\n", i, Z
  }' | shuf --random-source=<(yes) >"$DATA/miss.txt"
  touch "$DATA/.done-v1"
}

# Re-executes the calling script inside a private network namespace that has
# only `lo` (nothing can leave the machine). Falls back to the root namespace.
enter_netns() {
  [ -n "${PERF_IN_NETNS:-}" ] && return 0
  [ "${NETNS:-1}" = 0 ] && { export PERF_IN_NETNS=none; return 0; }
  # shellcheck disable=SC2016  # expanded by the inner bash
  local cmd='ip link set lo up && exec bash "$0" "$@"'
  if unshare --net -- true 2>/dev/null; then
    exec unshare --net -- env PERF_IN_NETNS="private (lo only)" bash -c "$cmd" "$0" "$@"
  elif unshare --net --map-root-user -- true 2>/dev/null; then
    exec unshare --net --map-root-user -- env PERF_IN_NETNS="private, user namespace (lo only)" \
      bash -c "$cmd" "$0" "$@"
  fi
  export PERF_IN_NETNS=none
  log "note: cannot create a network namespace; running in the root namespace (127.0.0.1 only)"
}

# nice value for servers and dnsperf, if this user may use it (empty = none)
pick_nice() {
  [ -z "$NICE" ] && return 0
  local got; got=$(nice -n "$NICE" nice 2>/dev/null || echo x)
  if [ "$got" != "$(( $(nice) + NICE ))" ]; then
    log "note: cannot use nice $NICE here: servers and dnsperf run at the default priority"; NICE=""
  fi
}

pinned() { # pinned CPU cmd... : run cmd with $NICE on CPU (empty CPU = anywhere)
  local cpu=$1; shift
  local pre=()
  [ -n "$NICE" ] && pre+=(nice -n "$NICE")
  [ -n "$cpu" ] && pre+=(taskset -c "$cpu")
  "${pre[@]}" "$@"
}

# -------------------------------------------------------- CPU accounting --

HZ=$(getconf CLK_TCK)

tree_ticks() { # tree_ticks PID: utime+stime of PID and all its descendants (NSD forks twice)
  local t; t=$(tree_ticks_split "$1"); echo $(( ${t% *} + ${t#* } ))
}

tree_ticks_split() { # tree_ticks_split PID: "UTIME STIME" of PID and all its descendants
  # /proc/PID/stat: comm may contain spaces ("nsd: server 1"): parse after the last ')'
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { id = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
      ppid[id] = f[2]; ut[id] = f[12]; st[id] = f[13] }       # f[2]=ppid f[12]=utime f[13]=stime
    END {
      for (id in ppid) for (p = id; p > 1; p = ppid[p]) if (p == root) { u += ut[id]; s += st[id]; break }
      print u + 0, s + 0
    }'
}

# Foreign load: CPU used on this machine by anything but this script and its
# descendants (servers, dnsperf): someone compiling on a shared box. Snapshot =
# "busy ours": busy = user+nice+system ticks of all CPUs (/proc/stat, not
# namespaced, so it sees other containers too); ours = utime+stime+cutime+cstime
# of our process tree (reaped children included). irq and softirq time is left
# out: a tick that lands in softirq on an idle CPU is charged to no process
# (and with IRQ time accounting none is), and during a run most of it is the
# delivery of our own packets (on an Intel VM on 2026-12-05, 27% of a CPU
# during hit runs with nothing else running, near 0 when idle). Where a tick
# lands in softirq over a running task, the task is charged, so it is in
# "ours" but not in "busy": the difference is clamped at 0.
foreign_snapshot() {
  local busy
  busy=$(awk '/^cpu / { print $2 + $3 + $4; exit }' /proc/stat)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$ROOT_PID" -v busy="$busy" '
    { id = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " ")
      ppid[id] = f[2]; ticks[id] = f[12] + f[13] + f[14] + f[15] }
    END {
      for (id in ppid) {
        for (p = id; p > 1; p = ppid[p]) if (p == root) { ours += ticks[id]; break }
      }
      print busy, ours + 0
    }'
}

foreign_ticks_between() { # foreign_ticks_between FILE0 FILE1 -> foreign ticks in between
  awk 'NR == 1 { b = $1; o = $2; next } { d = ($1 - b) - ($2 - o); print (d > 0 ? d : 0) }' "$1" "$2"
}

cpu_stat() { awk '/^cpu[0-9]/ { idle = $5 + $6; tot = 0; for (i = 2; i <= NF; i++) tot += $i; print $1, tot - idle, tot }' /proc/stat; }
cpu_busy_between() { # "cpu0=NN cpu1=NN" from two cpu_stat outputs
  paste <(echo "$1") <(echo "$2") | awk '{ d = $6 - $3; printf "%s=%.0f ", $1, (d > 0 ? 100 * ($5 - $2) / d : 0) }'
}
udp_errors() { awk '/^Udp: [0-9]/ { print $4 }' /proc/net/snmp; }  # InErrors (includes RcvbufErrors)

# Steal time: ticks the hypervisor ran something else while a vCPU of this VM
# wanted to run (/proc/stat "cpu" line, 8th value, summed over the CPUs). It is
# the host's load, which the foreign-process count inside the VM cannot see: on
# an Intel VM on 2026-12-07 a busy host halved the reflector's saturation QPS
# from one round to the next with no foreign process running.
steal_ticks() { awk '/^cpu / { print $9; exit }' /proc/stat; }

# Quiet gate: wait (up to QUIET_WAIT s) until foreign CPU plus steal time over
# 1 s is below QUIET_MAX %. Prints the seconds waited.
quiet_gate() {
  local waited=0 load st0 st1
  while :; do
    st0=$(steal_ticks); foreign_snapshot >"$RUN/fg0"; sleep 1; foreign_snapshot >"$RUN/fg1"; st1=$(steal_ticks)
    load=$(( ($(foreign_ticks_between "$RUN/fg0" "$RUN/fg1") + st1 - st0) * 100 / HZ ))
    [ "$load" -lt "$QUIET_MAX" ] && break
    [ "$waited" -ge "$QUIET_WAIT" ] && { log "  machine still busy (${load}% foreign CPU + steal): running anyway"; break; }
    [ "$waited" = 0 ] && log "  machine busy (${load}% foreign CPU + steal): waiting up to ${QUIET_WAIT}s"
    sleep 2; waited=$((waited + 3))
  done
  echo "$waited"
}

# ------------------------------------------------------------ dnsperf ----

# percentiles LATFILE COMPLETED LOST -> "p50_ms=.. p99_ms=.. p999_ms=.."
# LATFILE holds one latency (s) per completed query. Lost queries count as
# infinitely slow: a percentile that falls among them is reported as "lost".
percentiles() {
  sort -g "$1" | awk -v n="$2" -v lost="$3" '
    { a[NR] = $1; sum += $1 }
    END {
      if (NR > 0) printf "mean_ms=%.3f ", sum / NR * 1000
      total = n + lost; split("50 99 99.9", ps, " "); split("p50 p99 p999", names, " ")
      for (i = 1; i <= 3; i++) {
        r = total * ps[i] / 100; r = (r == int(r)) ? r : int(r) + 1; if (r < 1) r = 1
        v = (total == 0 || r > n) ? "lost" : sprintf("%.3f", a[r] * 1000)
        printf "%s_ms=%s ", names[i], v
      }
    }'
}

dnsperf_cmd() { # dnsperf_cmd SERVER WORKLOAD MODE [QPS]: sets the array DP
  local srv=$1 wl=$2 mode=$3 qps=${4:-} dur=$DURATION
  workload_args "$wl"   # -> QFILE, DP_EXTRA, DP_CAP
  DP=(dnsperf -s 127.0.0.1 -p "$(srv_port "$srv")" -d "$QFILE" -c "$CLIENTS" -T "$CTHREADS"
      -q "$OUTSTANDING" -t "$TIMEOUT" "${DP_EXTRA[@]}")
  [ "$mode" = sweep ] && dur=$SWEEP_DURATION
  [ "$mode" != sat ] && DP+=(-Q "$qps" -v)
  # a fixed-count workload (zipf) runs to its end at saturation, within a time cap
  [ "$mode" = sat ] && [ -n "$DP_CAP" ] && dur=$DP_CAP
  DP+=(-l "$dur")
}

parse_dnsperf() { # parse_dnsperf FILE: dnsperf's statistics as key=value pairs
  # (in TCP mode a second "Average Latency" follows: that of connection set-up)
  awk '
    /Queries sent:/        { o = o " sent=" $3 }
    /Queries completed:/   { o = o " completed=" $3 }
    /Queries lost:/        { o = o " lost=" $3 }
    /Run time \(s\):/      { o = o " runtime_s=" $4 }
    /Queries per second:/  { o = o sprintf(" qps=%.0f", $4) }
    /Average Latency/ && !n++ { gsub(/[(),]/, ""); o = o sprintf(" avg_ms=%.3f max_ms=%.3f", $4 * 1000, $8 * 1000) }
    /Reconnections:/       { o = o " reconnections=" $2 }   # TCP only
    /Response codes:/      { sub(/.*Response codes: */, ""); gsub(/ \([^)]*\)/, ""); gsub(/ /, ""); o = o " rcodes=" $0 }
    END { print substr(o, 2) }' "$1"
}

kv() { # kv KEY "k=v k=v ...": the value of KEY (empty if absent)
  local pair; for pair in $2; do [ "${pair%%=*}" = "$1" ] && { echo "${pair#*=}"; return; }; done; echo ""
}

latency_stats() { # latency_stats VERBOSE_FILE DNSPERF_AVG_MS: "mean_ms=.. p50_ms=.. p99_ms=.. p999_ms=.."
  local vout=$1 avg=$2 stats mean
  awk '/^> / && $2 != "T" { print $NF }' "$vout" >"$RUN/lat.txt"
  stats=$(percentiles "$RUN/lat.txt" "$(wc -l <"$RUN/lat.txt")" "$(grep -c '^> T ' "$vout" || true)")
  rm -f "$RUN/lat.txt"
  # self-check: the mean of the per-query lines must be dnsperf's own average
  mean=$(kv mean_ms "$stats")
  awk -v a="${avg:-0}" -v m="${mean:-0}" 'BEGIN { d = a - m; if (d < 0) d = -d; exit !(d > 0.002 + a * 0.01) }' \
    && log "  WARNING: per-query latencies (mean $mean ms) disagree with dnsperf's average ($avg ms)"
  echo "${stats% }"
}

ticks_to_s() { awk -v a="$1" -v b="$2" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }'; }
ratio() { awk -v a="$1" -v b="$2" -v k="$3" -v f="$4" 'BEGIN { if (b > 0) printf f, k * a / b; else print "na" }'; }

# measure SERVER WORKLOAD MODE [QPS]: one dnsperf run against SERVER, with CPU
# accounting; appends one key=value line to $OUT/summary.txt. Returns 1 if noisy.
#   sat   : closed loop (-q outstanding): QPS at saturation, CPU s per 1M queries
#   fixed : offered load QPS (-Q) with per-query output (-v): p50/p99/p99.9
#   sweep : like fixed, for the latency-vs-load plot
measure() {
  local srv=$1 wl=$2 mode=$3 qps=${4:-} pid
  pid=$(srv_pid "$srv")
  dnsperf_cmd "$@"
  local waited; waited=$(quiet_gate)
  local raw="$OUT/raw/r${ROUND}-$wl-$srv-$mode${qps:+-$qps}.txt" vout="$RUN/dnsperf.out"
  local s0 a0 c0 u0 t0 s1 a1 c1 u1 t1
  local st0 st1
  foreign_snapshot >"$RUN/f0"; st0=$(steal_ticks)
  s0=$(tree_ticks_split "$pid"); a0=$(tree_ticks "$(srv_pid nsd)"); c0=$(cpu_stat); u0=$(udp_errors); t0=$(date +%s.%N)
  pinned "$CLIENT_CPU" "${DP[@]}" >"$vout" 2>&1 || true
  t1=$(date +%s.%N); s1=$(tree_ticks_split "$pid"); a1=$(tree_ticks "$(srv_pid nsd)"); c1=$(cpu_stat); u1=$(udp_errors)
  st1=$(steal_ticks); foreign_snapshot >"$RUN/f1"
  kill -0 "$pid" 2>/dev/null || log "  WARNING: $srv (pid $pid) is gone after this run"

  grep -v '^> ' "$vout" >"$raw" || true
  local res lat="" elapsed srv_s usr_s sys_s foreign steal noisy
  res=$(parse_dnsperf "$raw")
  [ "$mode" != sat ] && lat="$(latency_stats "$vout" "$(kv avg_ms "$res")") "
  rm -f "$vout"
  elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  usr_s=$(ticks_to_s "${s0% *}" "${s1% *}"); sys_s=$(ticks_to_s "${s0#* }" "${s1#* }")
  srv_s=$(awk -v u="$usr_s" -v s="$sys_s" 'BEGIN { printf "%.3f", u + s }')
  local ticks; ticks=$(awk -v e="$elapsed" -v hz="$HZ" 'BEGIN { print e * hz }')
  foreign=$(ratio "$(foreign_ticks_between "$RUN/f0" "$RUN/f1")" "$ticks" 100 "%.0f")
  steal=$(ratio "$((st1 - st0))" "$ticks" 100 "%.0f")
  noisy=$([ $(( ${foreign%.*} + ${steal%.*} )) -ge "$NOISY_MAX" ] 2>/dev/null && echo 1 || echo 0)

  local line="round=$ROUND server=$srv workload=$wl mode=$mode offered=${qps:-0} $res ${lat}srv_cpu_s=$srv_s"
  line+=" srv_cpu_pct=$(ratio "$srv_s" "$elapsed" 100 "%.0f") cpu_s_per_Mq=$(ratio "$srv_s" "$(kv completed "$res")" 1e6 "%.2f")"
  line+=" user_s_per_Mq=$(ratio "$usr_s" "$(kv completed "$res")" 1e6 "%.2f") sys_s_per_Mq=$(ratio "$sys_s" "$(kv completed "$res")" 1e6 "%.2f")"
  line+=" auth_cpu_s=$(ticks_to_s "$a0" "$a1") $(cpu_busy_between "$c0" "$c1")foreign_pct=$foreign steal_pct=$steal"
  line+=" waited_s=$waited udp_err=$((u1 - u0)) noisy=$noisy"
  echo "$line" >>"$OUT/summary.txt"
  log "  $(printf '%-9s %-8s %-11s' "$srv" "$wl" "$mode${qps:+@$qps}") qps=$(kv qps "$res") lost=$(kv lost "$res")" \
      "cpu_s/Mq=$(kv cpu_s_per_Mq "$line") (user $(kv user_s_per_Mq "$line")) ${lat}foreign=${foreign}% steal=${steal}%$([ "$noisy" = 1 ] && echo ' NOISY')"
  return "$noisy"
}
