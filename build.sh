#!/usr/bin/env bash
# build.sh — the same tasks as build.ps1, for hosts without pwsh (like CI).
#   ./build.sh build                 build the solution
#   ./build.sh test                  build, package, parse gate, every test project, Pester acceptance tests (where pwsh
#                                    and Pester 5 exist); ends with "Total: N passed, N failed, N skipped"
#   ./build.sh package               an importable module folder: out/KvmOvercommit/<version>/
#   ./build.sh publish               kvmoc compiled ahead of time (Native AOT): out/kvmoc/kvmoc, one native executable
#                                    (+ systemd/kvmoc-autotune.service); `test` builds it and tests it against the JIT one
#   ./build.sh gate                  the PowerShell parse gate alone (tree-sitter + well-formed .ps1xml)
#   ./build.sh experiment [args…]    the main job: `kvmoc experiment` (default: 4 tiny guests, 3 KSM profiles, ~4 min)
# CONFIGURATION=Debug|Release (default Release).
set -euo pipefail
cd "$(dirname "$0")"
root="$PWD"
task="${1:-build}"; shift || true
config="${CONFIGURATION:-Release}"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

module_bin="src/KvmOvercommit/bin/$config/net8.0"
cli_dll="src/KvmOvercommit.Cli/bin/$config/net10.0/kvmoc.dll"
native_dir="out/kvmoc"
helpgen_dll="tools/KvmOvercommit.HelpGen/bin/$config/net10.0/KvmOvercommit.HelpGen.dll"

build() { dotnet build KvmOvercommit.sln -c "$config" -nologo -v quiet "$@"; }

module_version() { sed -nE "s/^[[:space:]]*ModuleVersion[[:space:]]*=[[:space:]]*['\"]([^'\"]+)['\"].*/\1/p" module/KvmOvercommit.psd1 | head -n1; }

# The files named by a manifest key (a quoted string or an @( ) list; one or several per line).
manifest_files() {
  local key="$1" psd1="$2"
  awk -v key="$key" '
    BEGIN { IGNORECASE = 1 }
    !on && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { on = 1; sub(/^[^=]*=/, ""); list = ($0 ~ /@\(/) }
    on { line = $0; while (match(line, /'"'"'[^'"'"']*'"'"'|"[^"]*"/)) { print substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, RSTART + RLENGTH) }
         if (!list || $0 ~ /\)/) on = 0 }
  ' "$psd1"
}

package() {
  local version dest
  version="$(module_version)"
  [ -n "$version" ] || { echo "package: no ModuleVersion in module/KvmOvercommit.psd1" >&2; return 1; }
  dest="out/KvmOvercommit/$version"
  rm -rf out/KvmOvercommit
  mkdir -p "$dest/en-US"
  cp module/KvmOvercommit.psd1 module/*.ps1xml "$dest/"
  cp module/en-US/* "$dest/en-US/"
  # The module and its engine only: System.Management.Automation is PowerShell's own (the bin copy is a reference assembly).
  cp "$module_bin/KvmOvercommit.dll" "$module_bin/KvmOvercommit.Engine.dll" "$dest/"
  dotnet "$helpgen_dll" "$module_bin/KvmOvercommit.dll" "$dest/en-US/KvmOvercommit.dll-Help.xml"
  check_package "$dest"
  echo "package: $root/$dest"
}

# kvmoc as one native executable (Native AOT: the ILCompiler package from NuGet, the system's gcc or clang to link).
publish() {
  local rid
  case "$(uname -m)" in x86_64) rid=linux-x64 ;; aarch64) rid=linux-arm64 ;; *) echo "publish: no Native AOT runtime for $(uname -m)" >&2; return 1 ;; esac
  rm -rf "$native_dir"
  dotnet publish src/KvmOvercommit.Cli -c "$config" -r "$rid" -nologo -v quiet -o "$native_dir" -p:DebugType=none -p:GenerateDocumentationFile=false
  rm -f "$native_dir/kvmoc.dbg"   # 17 MB of native debug symbols; `dotnet publish` without this script keeps them
  [ -x "$native_dir/kvmoc" ] || { echo "publish: $native_dir/kvmoc was not produced" >&2; return 1; }
  echo "publish: $root/$native_dir/kvmoc ($(du -h "$native_dir/kvmoc" | cut -f1), native)"
}

# Everything the manifest names, plus the engine and the help, must be in the package folder.
check_package() {
  local dest="$1" missing=0 f
  for key in RootModule FormatsToProcess TypesToProcess RequiredAssemblies NestedModules ScriptsToProcess; do
    while IFS= read -r f; do
      [ -n "$f" ] || continue
      if [ ! -e "$dest/$f" ]; then echo "package: $key names '$f', which is not in $dest" >&2; missing=1; fi
    done < <(manifest_files "$key" "$dest/KvmOvercommit.psd1")
  done
  for f in KvmOvercommit.dll KvmOvercommit.Engine.dll en-US/about_KvmOvercommit.help.txt en-US/KvmOvercommit.dll-Help.xml; do
    if [ ! -s "$dest/$f" ]; then echo "package: $dest/$f is missing or empty" >&2; missing=1; fi
  done
  if [ -e "$dest/System.Management.Automation.dll" ]; then echo "package: must not ship System.Management.Automation.dll" >&2; missing=1; fi
  return "$missing"
}

# The parse gate needs its npm packages (web-tree-sitter + tree-sitter-powershell's wasm); install them once.
gate() {
  if [ ! -d tools/psparse/node_modules/web-tree-sitter ] || [ ! -d tools/psparse/node_modules/tree-sitter-powershell ]; then
    (cd tools/psparse && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  fi
  node tools/psparse/psparse.cjs "$root"
}

# Pester acceptance tests where pwsh and Pester 5 exist; prints "pester: P F S" for the summary.
pester() {
  if ! command -v pwsh >/dev/null 2>&1; then
    echo "SKIPPED Pester acceptance tests: pwsh not found"
    return 0
  fi
  if ! pwsh -NoProfile -NonInteractive -Command 'if (-not (Get-Module -ListAvailable Pester | Where-Object { $_.Version.Major -ge 5 })) { exit 3 }'; then
    echo "SKIPPED Pester acceptance tests: Pester 5 not found (Install-Module Pester -MinimumVersion 5.0)"
    return 0
  fi
  # The acceptance tests change KSM and start guests: hold the host-test lock as the xunit host tests do.
  KVMOC_MODULE="$root/out/KvmOvercommit/$(module_version)/KvmOvercommit.psd1" KVMOC_CLI="$root/$cli_dll" \
    flock /tmp/kvmoc-host-tests.lock pwsh -NoProfile -NonInteractive -Command '
    Import-Module Pester -MinimumVersion 5.0
    $c = New-PesterConfiguration
    $c.Run.Path = "tests/acceptance"
    $c.Run.PassThru = $true
    $c.Output.Verbosity = "Normal"
    $r = Invoke-Pester -Configuration $c
    "pester: {0} {1} {2}" -f $r.PassedCount, $r.FailedCount, ($r.SkippedCount + $r.NotRunCount)
    if ($r.FailedCount -gt 0 -or $r.Result -ne "Passed") { exit 1 }'
}

test_all() {
  local log passed=0 failed=0 skipped=0 rc=0 projects=0 reported=0
  log="$(mktemp)"
  trap 'rm -f "$log"' RETURN
  build
  package
  publish
  gate
  projects=$(grep -cE '^Project\(.*tests[\\/][^"]*Tests\.csproj"' KvmOvercommit.sln || true)
  KVMOC_NATIVE="$root/$native_dir/kvmoc" dotnet test KvmOvercommit.sln -c "$config" --no-build -nologo 2>&1 | tee "$log" || rc=1
  # VSTest prints one line per test project: "Passed!  - Failed: 0, Passed: 12, Skipped: 1, Total: 13, …".
  while read -r f p s; do
    failed=$((failed + f)); passed=$((passed + p)); skipped=$((skipped + s)); reported=$((reported + 1))
  done < <(sed -nE 's/.*(Passed|Failed)! +- Failed: +([0-9]+), Passed: +([0-9]+), Skipped: +([0-9]+), Total.*/\2 \3 \4/p' "$log")
  if [ "$reported" -lt "$projects" ]; then
    echo "test: only $reported of $projects test projects reported results" >&2
    rc=1
  fi
  pester 2>&1 | tee "$log" || rc=1
  while read -r p f s; do
    failed=$((failed + f)); passed=$((passed + p)); skipped=$((skipped + s))
  done < <(sed -nE 's/^pester: ([0-9]+) ([0-9]+) ([0-9]+)$/\1 \2 \3/p' "$log")
  [ "$failed" -eq 0 ] || rc=1
  echo "Total: $passed passed, $failed failed, $skipped skipped"
  return "$rc"
}

# Without arguments: 4 tiny guests × 128 MiB, profiles Default, Aggressive and Adaptive for 60 s each (about 4 minutes
# in all under TCG), the report in out/experiment/<UTC time>/. With arguments: exactly those (kvmoc experiment --help).
experiment() {
  dotnet build src/KvmOvercommit.Cli -c "$config" -nologo -v quiet
  if [ "$#" -eq 0 ]; then
    local report="$root/out/experiment/$(date -u +%Y%m%dT%H%M%SZ)"
    echo "experiment: 4 tiny guests x 128 MiB, KSM profiles Default, Aggressive, Adaptive, 60 s each; report: $report" >&2
    set -- --guest-count 4 --memory-mb 128 --ksm-profile Default,Aggressive,Adaptive --duration 60 --report-path "$report"
  fi
  exec dotnet "$cli_dll" experiment "$@"
}

case "$task" in
  build) build ;;
  test) test_all ;;
  package) build && package ;;
  publish) publish ;;
  gate) gate ;;
  experiment) experiment "$@" ;;
  *) echo "unknown task '$task' (build, test, package, publish, gate, experiment)" >&2; exit 2 ;;
esac
