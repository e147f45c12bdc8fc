#!/usr/bin/env bash
# balancer-cpu.sh — what the memory daemon costs itself (issue 14): `kvmoc memory balance --with-ksm-autotune` (the
# balloon balancer and the adaptive KSM tuner in one process, in place of ksmtuned plus MOM) over N idle tiny guests
# (TCG, -m 128, kvmoc.quiet), for D seconds. Reported: the daemon's own CPU, utime + stime of its process read from
# /proc/<pid>/stat at the start and the end of the window, over the wall time, in percent of one core — the goal is
# at most 2%. ksmd's CPU over the same window is shown beside it (the merging itself, not the daemon).
# Needs root. Holds /tmp/kvmoc-host-tests.lock; stops the guests and restores every KSM setting on exit, Ctrl+C or failure.
#
#   sudo tests/KvmOvercommit.Benchmarks/scripts/balancer-cpu.sh [--guests 24] [--memory-mb 128] [--duration 90]
#        [--interval 2] [--log-dir DIR]
#   KVMOC=/path/to/kvmoc overrides the kvmoc binary (default: the Release build in this repository).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
if [[ -z "${KVMOC_BENCH_LOCKED:-}" ]]; then
  exec env KVMOC_BENCH_LOCKED=1 flock /tmp/kvmoc-host-tests.lock "$0" "$@"
fi

guests=24 memory_mb=128 duration=90 interval=2 log_dir=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --guests) guests="$2"; shift 2 ;;
    --memory-mb) memory_mb="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --interval) interval="$2"; shift 2 ;;
    --log-dir) log_dir="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $EUID -eq 0 ]] || { echo "needs root" >&2; exit 2; }
KVMOC="${KVMOC:-$repo/src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc}"
[[ -x "$KVMOC" ]] || { echo "kvmoc not found at $KVMOC: dotnet build src/KvmOvercommit.Cli -c Release" >&2; exit 3; }
K=/sys/kernel/mm/ksm
work="$(mktemp -d /tmp/kvmoc-balancer-cpu.XXXXXX)"
[[ -n "$log_dir" ]] || log_dir="$work"
mkdir -p "$log_dir"
knob() { local v; read -r v < "$K/$1"; v="${v#*[}"; echo "${v%%]*}"; }
saved_run=$(knob run) saved_pages=$(knob pages_to_scan) saved_sleep=$(knob sleep_millisecs)
qpids=() daemon=""

restore() {
  local rc=$? p
  trap - EXIT INT TERM
  [[ -n "$daemon" ]] && { kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; }
  for p in "${qpids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  echo "$saved_pages" > $K/pages_to_scan; echo "$saved_sleep" > $K/sleep_millisecs
  echo 2 > $K/run
  for ((p = 0; p < 600; p++)); do [[ "$(cat $K/pages_sharing)" == 0 && "$(cat $K/pages_shared)" == 0 ]] && break; sleep 0.1; done
  echo "$saved_run" > $K/run
  echo "restored KSM: run=$(knob run) pages_to_scan=$(knob pages_to_scan) sleep_millisecs=$(knob sleep_millisecs)" >&2
  [[ "$log_dir" == "$work"* ]] || cp -f "$work"/*.log "$log_dir"/ 2>/dev/null || true
  rm -rf "$work"
  exit $rc
}
trap restore EXIT
trap 'exit 130' INT TERM

ticks() { local f; read -r -a f < "/proc/$1/stat"; echo $(( f[13] + f[14] )); }   # utime + stime (fields 14, 15)
now_ns() { date +%s%N; }
hz=$(getconf CLK_TCK)

"$KVMOC" tiny-guest > /dev/null
rundir="$work/guests"; mkdir -p "$rundir"
t0=$(now_ns)
starters=()
for ((i = 0; i < guests; i++)); do
  "$KVMOC" guest start --tiny --name "bcpu-$i" --memory-mb "$memory_mb" --accelerator Tcg --network None --no-vnc \
    --kernel-arguments kvmoc.quiet --run-directory "$rundir" > "$work/start-$i.log" 2>&1 &
  starters+=($!)
done
for ((i = 0; i < guests; i++)); do
  wait "${starters[$i]}" || { echo "guest bcpu-$i did not start: $(cat "$work/start-$i.log")" >&2; exit 6; }
  qpids+=("$(cat "$rundir/bcpu-$i/qemu.pid")")
done
boot_s=$(( 60 + 5 * guests ))
for ((i = 0; i < guests; i++)); do
  for ((t = 0; t < boot_s * 10; t++)); do grep -q KVMOC-READY "$rundir/bcpu-$i/serial.log" 2>/dev/null && break; sleep 0.1; done
  grep -q KVMOC-READY "$rundir/bcpu-$i/serial.log" || { echo "guest bcpu-$i did not boot in $boot_s s" >&2; exit 6; }
done
echo "$guests guests (-m $memory_mb) ready after $(( ($(now_ns) - t0) / 1000000000 )) s" >&2

# The daemon: its start-up (the .NET runtime, JIT) is not its steady cost, so the window opens 10 s after it starts.
"$KVMOC" memory balance 'bcpu-*' --with-ksm-autotune --interval-seconds "$interval" --psi-threshold-percent 0 --quiet \
  > "$work/daemon.log" 2>&1 &
daemon=$!
sleep 10
kill -0 "$daemon" || { echo "the daemon exited: $(cat "$work/daemon.log")" >&2; exit 7; }
ksmd=$(pgrep -x ksmd | head -1)
d0=$(ticks "$daemon") k0=$(ticks "$ksmd") w0=$(now_ns)
sleep "$duration"
d1=$(ticks "$daemon") k1=$(ticks "$ksmd") w1=$(now_ns)
kill -TERM "$daemon"; wait "$daemon" || true; daemon=""
wall=$(echo "scale=3; ($w1 - $w0) / 1000000000" | bc)
dcpu=$(echo "scale=3; ($d1 - $d0) / $hz" | bc)
kcpu=$(echo "scale=3; ($k1 - $k0) / $hz" | bc)
dpct=$(echo "scale=2; 100 * $dcpu / $wall" | bc)
kpct=$(echo "scale=2; 100 * $kcpu / $wall" | bc)
verdict=$(echo "$dpct <= 2" | bc)
echo
echo "| guests | -m | interval | window (s) | daemon CPU (s) | daemon % of a core | ksmd CPU (s) | ksmd % |"
echo "|---|---|---|---|---|---|---|---|"
echo "| $guests | $memory_mb | $interval s | $wall | $dcpu | $dpct | $kcpu | $kpct |"
echo
[[ "$verdict" == 1 ]] && echo "PASS: the daemon used $dpct% of a core (goal: at most 2%)" || echo "FAIL: the daemon used $dpct% of a core (goal: at most 2%)"
tail -5 "$work/daemon.log" >&2
cp -f "$work/daemon.log" "$log_dir/" 2>/dev/null || true
