#!/usr/bin/env pwsh
# E3 build entry point for PowerShell; the same verbs as build.sh:
#   ./build.ps1 restore|build|test|test-asan|demo|bench|publish|clean
# On Linux it delegates package installation (apt, NVRTC from non-free, cmake) to build.sh so there is one
# source of truth for system setup; on Windows it needs the .NET 10 SDK (and, for emu, CMake + a C++ compiler).
param(
    [Parameter(Position = 0)][ValidateSet('restore', 'build', 'test', 'test-asan', 'demo', 'bench', 'publish', 'clean')]
    [string]$Verb = 'build',
    [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

if ($IsLinux -and (Test-Path ./build.sh)) {
    & bash ./build.sh $Verb @Rest
    exit $LASTEXITCODE
}

$config = if ($env:CONFIG) { $env:CONFIG } else { 'Release' }
function Invoke-Checked([scriptblock]$cmd) { & $cmd; if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE } }

function Restore {
    if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) { throw '.NET SDK 10 not found on PATH' }
    Invoke-Checked { dotnet restore Kernels.sln }
    if ((Test-Path tools/npm/package.json) -and -not (Test-Path tools/npm/node_modules) -and (Get-Command npm -ErrorAction SilentlyContinue)) {
        Push-Location tools/npm; Invoke-Checked { npm install --no-audit --no-fund --silent }; Pop-Location
    }
}
function Build-Native {
    if ((Test-Path native/CMakeLists.txt) -and (Get-Command cmake -ErrorAction SilentlyContinue)) {
        Invoke-Checked { cmake -S native -B native/build -DCMAKE_BUILD_TYPE=Release }
        Invoke-Checked { cmake --build native/build --config Release }
    }
}
function Build { Restore; Build-Native; Invoke-Checked { dotnet build Kernels.sln -c $config --no-restore } }

switch ($Verb) {
    'restore' { Restore }
    'build' { Build }
    'test' { Build; Invoke-Checked { dotnet test tests/E3.Tests/E3.Tests.csproj -c $config --no-build --logger 'console;verbosity=normal' @Rest } }
    'test-asan' { throw 'test-asan needs g++/clang AddressSanitizer: run ./build.sh test-asan on Linux' }
    'demo' { Build; Invoke-Checked { dotnet run --project src/Cli -c $config --no-build -- demo } }
    'bench' { Build; Invoke-Checked { dotnet run --project bench/E3.Bench -c Release --no-build -- --filter '*' } }
    'publish' {
        Restore
        $rid = if ($IsWindows) { 'win-x64' } else { 'linux-x64' }
        # From an empty folder, so nothing an earlier run left there ships with it.
        if (Test-Path "artifacts/publish/$rid") { Remove-Item -Recurse -Force "artifacts/publish/$rid" }
        Invoke-Checked { dotnet publish src/Cli/E3.Cli.csproj -c Release -r $rid --self-contained true -p:PublishTrimmed=true -p:TrimMode=partial -p:DebugType=none -o "artifacts/publish/$rid" }
    }
    'clean' {
        dotnet clean Kernels.sln | Out-Null
        Remove-Item -Recurse -Force artifacts, native/build, native/build-asan -ErrorAction SilentlyContinue
        Get-ChildItem src, tests, bench -Recurse -Directory -Include bin, obj | Remove-Item -Recurse -Force
    }
}
