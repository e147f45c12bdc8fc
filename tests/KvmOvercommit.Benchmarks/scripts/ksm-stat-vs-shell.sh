#!/usr/bin/env bash
# Times, as whole processes, the blog's shell loop over /sys/kernel/mm/ksm against `kvmoc ksm stat --json`.
#   tests/KvmOvercommit.Benchmarks/scripts/ksm-stat-vs-shell.sh [runs=200]
# Run it under the host lock so other test runs do not disturb it:
#   flock /tmp/kvmoc-host-tests.lock tests/KvmOvercommit.Benchmarks/scripts/ksm-stat-vs-shell.sh 200
set -euo pipefail
cd "$(dirname "$0")/../../.."
runs="${1:-200}"
dotnet build src/KvmOvercommit.Cli -c Release -nologo -v quiet >/dev/null
kvmoc="src/KvmOvercommit.Cli/bin/Release/net10.0/kvmoc.dll"
[ -d /sys/kernel/mm/ksm ] || { echo "no /sys/kernel/mm/ksm" >&2; exit 1; }

loop='for i in $(ls /sys/kernel/mm/ksm); do echo -n "$i: "; cat /sys/kernel/mm/ksm/$i; done'
now() { date +%s%N; }

# warm-up (page cache, dotnet's first start)
bash -c "$loop" >/dev/null; dotnet "$kvmoc" ksm stat --json >/dev/null

load=$(cut -d" " -f1-3 /proc/loadavg)
t0=$(now)
for ((r = 0; r < runs; r++)); do bash -c "$loop" >/dev/null; done
t1=$(now)
for ((r = 0; r < runs; r++)); do dotnet "$kvmoc" ksm stat --json >/dev/null; done
t2=$(now)

shell_ms=$(echo "scale=3; ($t1 - $t0) / 1000000 / $runs" | bc)
kvmoc_ms=$(echo "scale=3; ($t2 - $t1) / 1000000 / $runs" | bc)
files=$(ls /sys/kernel/mm/ksm | wc -l)
echo "files in /sys/kernel/mm/ksm: $files; runs: $runs; load average before: $load"
echo "shell loop (bash + ls + $files cat), whole process: ${shell_ms} ms per run"
echo "kvmoc ksm stat --json, whole process:              ${kvmoc_ms} ms per run"
echo "ratio kvmoc/shell (whole process vs whole process): $(echo "scale=2; $kvmoc_ms / $shell_ms" | bc)"
