#!/usr/bin/env bash
# N thin overlays on one qcow2 base (the blog's fleet: 300), side by side in one run, RUNS times, interleaved:
#   1. N `qemu-img create -f qcow2 -b base -F qcow2` processes (the blog's loop),
#   2. one `kvmoc qcow overlay -b base` process with N paths (whole process, start-up included): kvmoc as users get
#      it from `./build.sh publish` (compiled ahead of time: out/kvmoc/kvmoc), and the JIT build's kvmoc,
#   3. New-QcowOverlay's engine in-process (QcowOverlayWriter.CreateMany, Stopwatch; after a JIT warm-up run),
# and, as the floor any tool pays on this file system, `touch` creating N empty files in one process.
# Checks that kvmoc's overlay is byte-identical to qemu-img's and that `qemu-img check` passes, then prints medians.
#   flock /tmp/kvmoc-host-tests.lock tests/KvmOvercommit.Benchmarks/scripts/qcow-overlays.sh [N=300] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/../../.."
n="${1:-300}"; runs="${2:-5}"
dotnet build src/KvmOvercommit.Cli -c Release -nologo -v quiet >/dev/null
CONFIGURATION=Release ./build.sh publish >/dev/null
dotnet build tests/KvmOvercommit.Benchmarks -c Release -nologo -v quiet >/dev/null
kvmoc="$PWD/src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc"
bench="$PWD/tests/KvmOvercommit.Benchmarks/bin/Release/net10.0/KvmOvercommit.Benchmarks.dll"
command -v qemu-img >/dev/null || { echo "qemu-img not found (apt-get install qemu-utils)" >&2; exit 1; }

work="$(mktemp -d /tmp/kvmoc-qcow-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
kvmoc_native="$PWD/out/kvmoc/kvmoc"
base="$work/win7-base.qcow2"
qemu-img create -q -f qcow2 "$base" 20G
now() { date +%s%N; }
ms() { echo "scale=1; ($2 - $1) / 1000000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# warm-up: page cache, dotnet's first start
"$kvmoc" qcow overlay -b "$base" "$work/warm.qcow2" >/dev/null; "$kvmoc_native" qcow overlay -b "$base" "$work/warm3.qcow2" >/dev/null; qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$work/warm2.qcow2"

load=$(cut -d" " -f1-3 /proc/loadavg)
: > "$work/qemu.ms"; : > "$work/kvmoc.ms"; : > "$work/native.ms"; : > "$work/touch.ms"
for ((r = 1; r <= runs; r++)); do
  mkdir "$work/q$r" "$work/k$r" "$work/r$r" "$work/t$r"
  t0=$(now)
  for ((i = 1; i <= n; i++)); do qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$work/q$r/win7-$i.qcow2"; done
  t1=$(now)
  paths=(); for ((i = 1; i <= n; i++)); do paths+=("$work/k$r/win7-$i.qcow2"); done
  t2=$(now)
  "$kvmoc" qcow overlay -b "$base" "${paths[@]}" >/dev/null
  t3=$(now)
  npaths=(); for ((i = 1; i <= n; i++)); do npaths+=("$work/r$r/win7-$i.qcow2"); done
  t6=$(now); "$kvmoc_native" qcow overlay -b "$base" "${npaths[@]}" >/dev/null; t7=$(now)
  tpaths=(); for ((i = 1; i <= n; i++)); do tpaths+=("$work/t$r/win7-$i.qcow2"); done
  t4=$(now); touch "${tpaths[@]}"; t5=$(now)
  ms "$t0" "$t1" >> "$work/qemu.ms"; ms "$t2" "$t3" >> "$work/kvmoc.ms"; ms "$t4" "$t5" >> "$work/touch.ms"; ms "$t6" "$t7" >> "$work/native.ms"
  for d in k r; do cmp -s "$work/$d$r/win7-$n.qcow2" "$work/q$r/win7-$n.qcow2" || { echo "kvmoc's overlay differs from qemu-img's" >&2; exit 1; }; done
  qemu-img check -q "$work/k$r/win7-1.qcow2"
  [ "$(ls "$work/k$r" | wc -l)" -eq "$n" ] || { echo "kvmoc made $(ls "$work/k$r" | wc -l) files, not $n" >&2; exit 1; }
  echo "run $r: qemu-img ${n}x $(tail -1 "$work/qemu.ms") ms, kvmoc (one process) $(tail -1 "$work/kvmoc.ms") ms, native $(tail -1 "$work/native.ms") ms, touch $(tail -1 "$work/touch.ms") ms"
done
dotnet "$bench" qcow-overlays "$base" "$work" "$n" "$runs" | tee "$work/inproc.out"
awk '{print $2}' "$work/inproc.out" > "$work/inproc.ms"

q=$(median < "$work/qemu.ms"); k=$(median < "$work/kvmoc.ms"); p=$(median < "$work/inproc.ms"); t=$(median < "$work/touch.ms"); r2=$(median < "$work/native.ms")
echo "overlays: $n on one 20 GiB qcow2 base; runs: $runs; load average before: $load; $(nproc) CPUs; $(qemu-img --version | head -1)"
echo "qemu-img create x $n processes:            median $q ms ($(echo "scale=2; $q / $n" | bc) ms per overlay)"
echo "kvmoc qcow overlay, $n paths, one process (native, ./build.sh publish): median $r2 ms  -> $(echo "scale=1; $q / $r2" | bc)x faster than qemu-img"
echo "the same, the JIT build's kvmoc:            median $k ms  -> $(echo "scale=1; $q / $k" | bc)x faster than qemu-img"
echo "QcowOverlayWriter.CreateMany in-process:    median $p ms  -> $(echo "scale=1; $q / $p" | bc)x faster than qemu-img"
echo "floor: touch, $n empty files, one process:  median $t ms"
echo "kvmoc start-up alone (kvmoc --version):     $(s=$(now); "$kvmoc" --version >/dev/null; e=$(now); ms "$s" "$e") ms, native $(s=$(now); "$kvmoc_native" --version >/dev/null; e=$(now); ms "$s" "$e") ms"
