#!/usr/bin/env bash
# build.sh — runs build.ps1 (the build) with the repository's own pwsh: `dotnet tool restore` installs PowerShell 7.6.9
# from .config/dotnet-tools.json (nothing system-wide), then `dotnet pwsh build.ps1 -Task <task>`.
#   ./build.sh build | test | package | publish | gate | pester [paths…] | experiment [kvmoc experiment args…]
# CONFIGURATION=Debug|Release (default Release). Tasks are described in build.ps1 (Get-Help ./build.ps1).
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
dotnet tool restore >/dev/null
task="${1:-build}"; shift || true
exec dotnet pwsh -NoProfile -NonInteractive -File ./build.ps1 -Task "$task" "$@"
