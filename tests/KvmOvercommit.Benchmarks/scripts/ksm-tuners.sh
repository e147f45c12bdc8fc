#!/usr/bin/env bash
# ksm-tuners.sh — KSM tuners side by side (issue 7), every trial from a fresh unmerge (run=2, wait until
# pages_shared/pages_sharing are 0):
#   Workload A (--workload processes, the default): 4 processes × 64 MiB whose pages are identical across processes
#     (MADV_MERGEABLE), 15 s later 2 more, 30 s window. 90% is measured against what can merge: (4 - 1) × 64 MiB, and
#     each late process's own 64 MiB.
#   Workload B (--workload guests): 4 tiny QEMU guests (TCG, -m 128, `kvmoc guest start --tiny`), later 2 more. How much
#     of a guest can merge is not known beforehand, so 90% is measured against the most any tuner of the run saved
#     (initial guests: pages_sharing before the late start; late guests: their ksm_merging_pages at the end). Times
#     count from the launch of the guests. Use a longer window, e.g. --window 60 --late 30.
# Tuners: kernel default (100/20 ms), the blog's aggressive 20000/20 ms, the kernel advisor (advisor_mode=scan-time),
# Debian's ksmtuned as Debian configures it, and kvmoc's adaptive tuner (`kvmoc ksm autotune`).
# Prints a markdown table. Needs root. Holds /tmp/kvmoc-host-tests.lock; restores every KSM setting on exit,
# Ctrl+C or failure.
#
#   sudo tests/KvmOvercommit.Benchmarks/scripts/ksm-tuners.sh [--tuners "default aggressive advisor ksmtuned adaptive"]
#        [--workload processes|guests] [--window 30] [--late 15] [--size-mb 64] [--initial 4] [--extra 2] [--log-dir DIR]
#   KVMOC=/path/to/kvmoc overrides the kvmoc binary (default: the Release build in this repository).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
if [[ -z "${KVMOC_BENCH_LOCKED:-}" ]]; then
  exec env KVMOC_BENCH_LOCKED=1 flock /tmp/kvmoc-host-tests.lock "$0" "$@"
fi

tuners="default aggressive advisor ksmtuned adaptive"
window=30 late=15 size_mb=64 initial=4 extra=2 log_dir="" workload=processes
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tuners) tuners="$2"; shift 2 ;;
    --window) window="$2"; shift 2 ;;
    --late) late="$2"; shift 2 ;;
    --size-mb) size_mb="$2"; shift 2 ;;
    --initial) initial="$2"; shift 2 ;;
    --extra) extra="$2"; shift 2 ;;
    --log-dir) log_dir="$2"; shift 2 ;;
    --workload) workload="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

KVMOC="${KVMOC:-$repo/src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc}"
[[ -x "$KVMOC" ]] || { echo "kvmoc not found at $KVMOC: dotnet build src/KvmOvercommit.Cli -c Release" >&2; exit 3; }
[[ "$workload" == processes || "$workload" == guests ]] || { echo "--workload is processes or guests" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "needs root (writes /sys/kernel/mm/ksm)" >&2; exit 4; }
K=/sys/kernel/mm/ksm
[[ -e $K/run ]] || { echo "no KSM in this kernel" >&2; exit 5; }
work="$(mktemp -d /tmp/kvmoc-ksm-tuners.XXXXXX)"
[[ -n "$log_dir" ]] || log_dir="$work"
mkdir -p "$log_dir"

knob() { local v; read -r v < "$K/$1"; v="${v#*[}"; echo "${v%%]*}"; }
put() { echo "$2" > "$K/$1"; }
has() { [[ -e "$K/$1" ]]; }

# --- what to restore -------------------------------------------------------------------------------------------
saved_run=$(knob run) saved_pages=$(knob pages_to_scan) saved_sleep=$(knob sleep_millisecs)
saved_advisor=""; has advisor_mode && saved_advisor=$(knob advisor_mode)
pids=()      # every process this script starts

stop_all() {
  local p
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    pkill -P "$p" 2>/dev/null || true   # ksmtuned's `sleep 60`
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

restore() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  [[ -n "$saved_advisor" ]] && put advisor_mode "$saved_advisor"
  [[ "$saved_advisor" == "scan-time" ]] || put pages_to_scan "$saved_pages"
  put sleep_millisecs "$saved_sleep"
  put run 2; wait_unmerged || true
  put run "$saved_run"
  echo "restored KSM: run=$(knob run) pages_to_scan=$(knob pages_to_scan) sleep_millisecs=$(knob sleep_millisecs)${saved_advisor:+ advisor_mode=$(knob advisor_mode)}" >&2
  rm -rf "$work"
  exit $rc
}
trap restore EXIT
trap 'exit 130' INT TERM

wait_unmerged() {
  local i s h
  for ((i = 0; i < 600; i++)); do
    read -r s < $K/pages_sharing; read -r h < $K/pages_shared
    [[ $s -eq 0 && $h -eq 0 ]] && return 0
    sleep 0.1
  done
  echo "KSM did not unmerge within 60 s" >&2; return 1
}

ksmd_pid=$(for d in /proc/[0-9]*; do [[ "$(cat "$d/comm" 2>/dev/null)" == ksmd ]] && { echo "${d#/proc/}"; break; }; done)
[[ -n "$ksmd_pid" ]] || { echo "ksmd not found" >&2; exit 5; }
ticks() { local a; read -r -a a < "/proc/$1/stat"; local i=0; while [[ "${a[$i]}" != *")" ]]; do ((i++)); done; echo $(( a[i+12] + a[i+13] )); }

now() { echo "${EPOCHREALTIME/./}"; }   # microseconds

# Starts n workloads (processes with seed 1, or tiny guests); waits until they are ready; writes their pids (QEMU's for
# guests, as soon as QEMU runs) to $3 in one step (the sampler reads it) and tracks them for cleanup. Sets launched_us: when they were ready (processes: their memory is
# allocated) or launched (guests: they fill their memory while booting).
launched_us=0
start_workloads() {
  [[ "$workload" == guests ]] && { start_guests "$@"; return; }
  local n=$1 tag=$2 pid_file=$3 i out wpids=()
  for ((i = 0; i < n; i++)); do
    out="$work/$tag-$i.out"
    "$KVMOC" ksm workload --size-mb "$size_mb" --seed 1 > "$out" 2>&1 &
    pids+=($!); wpids+=($!)
  done
  for ((i = 0; i < n; i++)); do
    out="$work/$tag-$i.out"
    local t
    for ((t = 0; t < 300; t++)); do grep -q '^READY' "$out" 2>/dev/null && break; sleep 0.05; done
    grep -q '^READY' "$out" || { echo "workload $tag-$i did not get ready: $(cat "$out")" >&2; exit 6; }
  done
  launched_us=$(now)
  echo "${wpids[*]}" > "$pid_file.tmp"; mv "$pid_file.tmp" "$pid_file"
}

# Workload B: n tiny guests started at once; ready when every serial log has KVMOC-READY.
start_guests() {
  local n=$1 tag=$2 pid_file=$3 i t name qpids=() starters=()
  local rundir="$work/guests"
  mkdir -p "$rundir"
  launched_us=$(now)
  for ((i = 0; i < n; i++)); do
    "$KVMOC" guest start --tiny --name "$tag-$i" --memory-mb 128 --accelerator Tcg --network None --no-vnc \
      --kernel-arguments kvmoc.quiet --run-directory "$rundir" > "$work/$tag-$i.start" 2>&1 &
    starters+=($!)
  done
  for ((i = 0; i < n; i++)); do
    wait "${starters[$i]}" || { echo "guest $tag-$i did not start: $(cat "$work/$tag-$i.start")" >&2; exit 6; }
    name="$tag-$i"
    qpids+=("$(cat "$rundir/$name/qemu.pid")"); pids+=("${qpids[-1]}")
  done
  echo "${qpids[*]}" > "$pid_file.tmp"; mv "$pid_file.tmp" "$pid_file"
  for ((i = 0; i < n; i++)); do
    for ((t = 0; t < 1200; t++)); do grep -q KVMOC-READY "$rundir/$tag-$i/serial.log" 2>/dev/null && break; sleep 0.05; done
    grep -q KVMOC-READY "$rundir/$tag-$i/serial.log" || { echo "guest $tag-$i did not boot in 60 s" >&2; exit 6; }
  done
}

# Samples every 100 ms until the window ends: t_us sharing shared ksmd_ticks late_merging_pages
sample() {
  local log=$1 t0=$2 end_us=$3 late_file=$4 t s h m lp p v
  while :; do
    t=$(now); (( t >= end_us )) && break
    read -r s < $K/pages_sharing; read -r h < $K/pages_shared
    m=0
    if [[ -s "$late_file" ]]; then
      read -r -a lp < "$late_file"
      for p in "${lp[@]}"; do v=0; read -r v < "/proc/$p/ksm_merging_pages" 2>/dev/null || v=0; m=$((m + v)); done
    fi
    echo "$((t - t0)) $s $h $(ticks "$ksmd_pid") $m" >> "$log"
    sleep 0.1
  done
}

trial() {
  local name=$1
  local log="$log_dir/$name.samples" late_file="$work/$name.late" tuner_pid=""
  : > "$log"; : > "$late_file"
  stop_all
  put run 2; wait_unmerged
  has advisor_mode && put advisor_mode none
  put pages_to_scan 100; put sleep_millisecs 20
  case "$name" in
    default) put run 1 ;;
    aggressive) put pages_to_scan 20000; put run 1 ;;
    advisor) put advisor_mode scan-time; put run 1 ;;
    ksmtuned)
      # As Debian runs it: ksm.service (`ksmctl start`: run=1 at the kernel's rate), then ksmtuned with the packaged
      # /etc/ksmtuned.conf (everything at its default: it looks once every 60 s); debug log only.
      put run 1
      DEBUG=1 LOGFILE="$log_dir/ksmtuned.log" PIDFILE="$work/ksmtuned.pid" /usr/sbin/ksmtuned
      sleep 0.2; tuner_pid=$(cat "$work/ksmtuned.pid"); pids+=("$tuner_pid") ;;
    adaptive)
      put run 1
      "$KVMOC" ksm autotune -v > "$log_dir/adaptive.decisions" 2> "$log_dir/adaptive.verbose" &
      tuner_pid=$!; pids+=("$tuner_pid")
      local i; for ((i = 0; i < 100; i++)); do [[ -s "$log_dir/adaptive.decisions" ]] && break; sleep 0.05; done ;;
    *) echo "unknown tuner $name" >&2; exit 2 ;;
  esac
  sleep 1   # let the tuner settle on an empty host
  local t0 t_late end_us tk0 sampler
  if [[ "$workload" == guests ]]; then
    # Guests merge while they boot: sample from their launch.
    t0=$(now); tk0=$(ticks "$ksmd_pid"); end_us=$((t0 + window * 1000000))
    sample "$log" "$t0" "$end_us" "$late_file" & sampler=$!
    start_workloads "$initial" "$name-a" "$work/$name.first"
  else
    start_workloads "$initial" "$name-a" "$work/$name.first"
    t0=$launched_us; tk0=$(ticks "$ksmd_pid"); end_us=$((t0 + window * 1000000))
    sample "$log" "$t0" "$end_us" "$late_file" & sampler=$!
  fi
  local wait_us=$(( t0 + late * 1000000 - $(now) ))
  (( wait_us > 0 )) && sleep "$(awk -v u="$wait_us" 'BEGIN { printf "%.3f", u / 1e6 }')"
  start_workloads "$extra" "$name-b" "$late_file"
  t_late=$(( launched_us - t0 ))
  wait "$sampler"
  local tuner_cpu="n/a"
  [[ "$name" == adaptive && -n "$tuner_pid" ]] && tuner_cpu=$(awk -v t="$(ticks "$tuner_pid")" 'BEGIN { printf "%.2f", t / 100 }')
  stop_all
  echo "$name $t_late $tk0 $tuner_cpu" > "$log_dir/$name.meta"
}

pages=$(( size_mb * 1024 * 1024 / $(getconf PAGESIZE) ))
if [[ "$workload" == guests ]]; then
  "$KVMOC" tiny-guest > /dev/null   # build or fetch the tiny guest before the first trial
  echo "Workload B: $initial tiny guests (TCG, 128 MiB), +$extra at ${late} s, ${window} s window; $(uname -r), $(nproc) CPUs" >&2
else
  echo "Workload A: $initial × $size_mb MiB ($pages pages each, identical across processes), +$extra at ${late} s, ${window} s window; $(uname -r), $(nproc) CPUs" >&2
fi
for t in $tuners; do
  echo "trial: $t" >&2
  trial "$t"
done

# --- the table ------------------------------------------------------------------------------------------------
# What 90% is measured against: what can merge (processes), or the most any tuner of this run saved (guests).
ref1=$(( (initial - 1) * pages )) ref2=$(( extra * pages ))
if [[ "$workload" == guests ]]; then
  ref1=0 ref2=0
  for t in $tuners; do
    read -r _ t_late _ _ < "$log_dir/$t.meta"
    read -r b1 m2 < <(awk -v tl="$t_late" '{ if ($1 < tl) b = $2; m = $5 } END { print b + 0, m + 0 }' "$log_dir/$t.samples")
    (( b1 > ref1 )) && ref1=$b1
    (( m2 > ref2 )) && ref2=$m2
  done
  echo "Workload B: 90% of the most saved in this run: initial guests $ref1 pages_sharing, late guests $ref2 merging pages" >&2
fi
echo
echo "| tuner | time to 90% (initial $initial) | time to 90% (late $extra) | ksmd CPU in ${window} s | steady ksmd CPU (last 10 s) | saved at end (MiB) |"
echo "|---|---|---|---|---|---|"
for t in $tuners; do
  read -r _ t_late tk0 tuner_cpu < "$log_dir/$t.meta"
  awk -v name="$t" -v ref1="$ref1" -v ref2="$ref2" -v tl="$t_late" -v tk0="$tk0" \
      -v win="$window" -v tcpu="$tuner_cpu" -v psz="$(getconf PAGESIZE)" '
    { t[NR] = $1; s[NR] = $2; k[NR] = $4; m[NR] = $5; n = NR }
    END {
      want1 = 0.9 * ref1; want2 = 0.9 * ref2
      t1 = -1; t2 = -1
      for (i = 1; i <= n; i++) {
        if (t1 < 0 && t[i] < tl && s[i] >= want1) t1 = t[i]
        if (t2 < 0 && t[i] >= tl && m[i] >= want2) t2 = t[i] - tl
        if (t[i] < tl) best1 = s[i]
      }
      # steady state: from the sample nearest to window-10 s to the last
      j = 1; for (i = 1; i <= n; i++) if (t[i] <= (win - 10) * 1e6) j = i
      cpu = (k[n] - tk0) / 100; steady = (k[n] - k[j]) / 100 / ((t[n] - t[j]) / 1e6) * 100
      f1 = t1 >= 0 ? sprintf("%.2f s", t1 / 1e6) : sprintf("not reached (%d%% by %.0f s)", ref1 > 0 ? 100 * best1 / ref1 : 0, tl / 1e6)
      f2 = t2 >= 0 ? sprintf("%.2f s", t2 / 1e6) : sprintf("not reached (%d%% by %.0f s)", ref2 > 0 ? 100 * m[n] / ref2 : 0, (t[n] - tl) / 1e6)
      label = name (name == "adaptive" && tcpu != "n/a" ? sprintf(" (tuner process: %s s CPU)", tcpu) : "")
      printf "| %s | %s | %s | %.2f s | %.1f%% | %.0f |\n", label, f1, f2, cpu, steady, s[n] * psz / 1048576
    }' "$log_dir/$t.samples"
done
