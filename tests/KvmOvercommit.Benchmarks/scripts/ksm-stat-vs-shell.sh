#!/usr/bin/env bash
# Times, as whole processes, the blog's shell loop over /sys/kernel/mm/ksm against `kvmoc ksm stat --json`: the JIT
# build (`dotnet kvmoc.dll`) and the native kvmoc of `./build.sh publish` (out/kvmoc/kvmoc), interleaved in one run.
#   tests/KvmOvercommit.Benchmarks/scripts/ksm-stat-vs-shell.sh [runs=200]
# Run it under the host lock so other test runs do not disturb it:
#   flock /tmp/kvmoc-host-tests.lock tests/KvmOvercommit.Benchmarks/scripts/ksm-stat-vs-shell.sh 200
set -euo pipefail
cd "$(dirname "$0")/../../.."
runs="${1:-200}"
dotnet build src/KvmOvercommit.Cli -c Release -nologo -v quiet >/dev/null
kvmoc="src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll"
CONFIGURATION=Release ./build.sh publish >/dev/null
native="out/kvmoc/kvmoc"
[ -d /sys/kernel/mm/ksm ] || { echo "no /sys/kernel/mm/ksm" >&2; exit 1; }

loop='for i in $(ls /sys/kernel/mm/ksm); do echo -n "$i: "; cat /sys/kernel/mm/ksm/$i; done'
now() { date +%s%N; }

# warm-up (page cache, dotnet's first start)
bash -c "$loop" >/dev/null; dotnet "$kvmoc" ksm stat --json >/dev/null; "$native" ksm stat --json >/dev/null

load=$(cut -d" " -f1-3 /proc/loadavg)
t0=$(now)
for ((r = 0; r < runs; r++)); do bash -c "$loop" >/dev/null; done
t1=$(now)
for ((r = 0; r < runs; r++)); do dotnet "$kvmoc" ksm stat --json >/dev/null; done
t2=$(now)
for ((r = 0; r < runs; r++)); do "$native" ksm stat --json >/dev/null; done
t3=$(now)

shell_ms=$(echo "scale=3; ($t1 - $t0) / 1000000 / $runs" | bc)
kvmoc_ms=$(echo "scale=3; ($t2 - $t1) / 1000000 / $runs" | bc)
native_ms=$(echo "scale=3; ($t3 - $t2) / 1000000 / $runs" | bc)
files=$(ls /sys/kernel/mm/ksm | wc -l)
echo "files in /sys/kernel/mm/ksm: $files; runs: $runs; load average before: $load"
echo "shell loop (bash + ls + $files cat), whole process: ${shell_ms} ms per run"
echo "kvmoc ksm stat --json, whole process (JIT):        ${kvmoc_ms} ms per run  ($(echo "scale=2; $kvmoc_ms / $shell_ms" | bc) x the shell loop)"
echo "kvmoc ksm stat --json, whole process (native):     ${native_ms} ms per run  ($(echo "scale=2; $native_ms / $shell_ms" | bc) x the shell loop)"
