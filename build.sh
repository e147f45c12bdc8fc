#!/usr/bin/env bash
# build.sh — the same tasks as build.ps1, for hosts without pwsh (like CI).
#   ./build.sh build | test | package | experiment [args…]
set -euo pipefail
cd "$(dirname "$0")"
task="${1:-build}"; shift || true
config="${CONFIGURATION:-Release}"

build() { dotnet build KvmOvercommit.sln -c "$config" -nologo -v quiet; }

case "$task" in
  build) build ;;
  test)
    build
    dotnet test KvmOvercommit.sln -c "$config" --no-build -nologo
    ;;
  *) echo "unknown task '$task' (build, test, package, experiment)" >&2; exit 2 ;;
esac
