#!/usr/bin/env bash
# Boot time of the tiny guest under TCG, measured from outside as a user sees it:
#   `kvmoc guest start --tiny` (returns once QMP answers) → KVMOC-READY on the guest's serial console.
# usage: flock /tmp/kvmoc-host-tests.lock tests/KvmOvercommit.Benchmarks/scripts/tiny-guest-boot.sh [runs] [parallel] [kernel-args]
#   KVMOC=out/kvmoc/kvmoc … times the native kvmoc of ./build.sh publish instead of the JIT build (dotnet kvmoc.dll).
set -euo pipefail
cd "$(dirname "$0")/../../.."
dll=src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll
[ -f "$dll" ] || dll=src/KvmOvercommit.Cli/bin/Debug/net10.0/kvmoc.dll
if [ -n "${KVMOC:-}" ]; then kvmoc() { "$KVMOC" "$@"; }; else kvmoc() { dotnet "$dll" "$@"; }; fi
runs=${1:-5}; par=${2:-4}; kargs=${3:-quiet}
run=$(mktemp -d /tmp/kvmoc-bench.XXXXXX)
names=()
cleanup() {
  for n in "${names[@]}"; do
    pid=$(cat "$run/$n/qemu.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$run"
}
trap cleanup EXIT
now() { date +%s.%N; }
wait_ready() { until grep -q KVMOC-READY "$run/$1/serial.log" 2>/dev/null; do sleep 0.02; done; }
start() { kvmoc guest start --tiny --name "$1" --memory-mb 128 --accelerator Tcg --network None --no-vnc --kernel-arguments "$kargs" --run-directory "$run" >/dev/null; }

kvmoc tiny-guest >/dev/null
echo "kvmoc: ${KVMOC:-dotnet $dll}; kernel args: '$kargs'; qemu: $(qemu-system-x86_64 --version | head -1); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  n=bench-$i; names+=("$n")
  t0=$(now); start "$n"; t1=$(now); wait_ready "$n"; t2=$(now)
  printf 'single %d: kvmoc start→QMP %.2f s, start→KVMOC-READY %.2f s\n' "$i" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)"
  kvmoc guest stop "$n" --run-directory "$run" --timeout-seconds 10 >/dev/null
done
t0=$(now)
for i in $(seq "$par"); do n=par-$i; names+=("$n"); start "$n"; done
t1=$(now)
for i in $(seq "$par"); do wait_ready "par-$i"; done
t2=$(now)
printf '%d at once: all started %.2f s, all KVMOC-READY %.2f s\n' "$par" "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t0" | bc)"
t0=$(now)
kvmoc guest stop 'par-*' --run-directory "$run" --timeout-seconds 10 >/dev/null
printf '%d stopped gracefully (ACPI power down) in %.2f s\n' "$par" "$(echo "$(now) - $t0" | bc)"
