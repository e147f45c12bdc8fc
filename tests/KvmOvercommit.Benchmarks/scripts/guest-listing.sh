#!/usr/bin/env bash
# Whole-process timing: the blog's `ps ax | grep kvm | wc -l` against `kvmoc guest list` with N processes whose
# argv is the blog's /usr/bin/kvm line (cheap `tail -f` processes renamed with exec -a; killed on exit, by pid).
#   flock /tmp/kvmoc-host-tests.lock tests/KvmOvercommit.Benchmarks/scripts/guest-listing.sh [N=300] [RUNS=10]
set -euo pipefail
n="${1:-300}"; runs="${2:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
kvmoc="${KVMOC:-$here/../../../src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc}"
native="${KVMOC_NATIVE:-$here/../../../out/kvmoc/kvmoc}"
[ -x "$kvmoc" ] || { echo "build kvmoc first: dotnet build src/KvmOvercommit.Cli -c Release" >&2; exit 2; }
[ -x "$native" ] || { echo "publish the native kvmoc first: ./build.sh publish" >&2; exit 2; }
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for i in $(seq 1 "$n"); do
  bash -c "exec -a /usr/bin/kvm tail -f -- -M pc-1.0 -smp 2 -enable-kvm -m 4048 -drive file=win7-$i.qcow2,if=virtio -net nic,model=virtio -net user -vnc :$i -device virtio-balloon-pci -daemonize /dev/null" >/dev/null 2>&1 &
  pids+=($!)
done
sleep 1
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000 )); }
stats() { sort -n | awk '{a[NR]=$1; s+=$1} END {printf "mean %.1f ms, median %.1f ms, min %.1f ms (%d runs)\n", s/NR/1000, a[int((NR+1)/2)]/1000, a[1]/1000, NR}'; }
echo "ps ax | grep kvm | wc -l  -> $(ps ax | grep kvm | wc -l) lines"
echo "kvmoc guest list          -> $("$kvmoc" guest list --json | grep -c '"Id":') guests"
echo -n "ps ax | grep kvm | wc -l: "; for r in $(seq "$runs"); do ms bash -c 'ps ax | grep kvm | wc -l'; done | stats
echo -n "kvmoc guest list (JIT):            "; for r in $(seq "$runs"); do ms "$kvmoc" guest list; done | stats
echo -n "kvmoc guest list --json (JIT):     "; for r in $(seq "$runs"); do ms "$kvmoc" guest list --json; done | stats
echo -n "kvmoc guest list (native):         "; for r in $(seq "$runs"); do ms "$native" guest list; done | stats
echo -n "kvmoc guest list --json (native):  "; for r in $(seq "$runs"); do ms "$native" guest list --json; done | stats
