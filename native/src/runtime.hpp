// Process-wide emulator state shared by the C ABI entry points.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "e3emu/e3emu.h"
#include "worker_pool.hpp"

namespace e3emu {

// Records `message` as this thread's last error and returns `code`, so entry points can `return fail(...)`.
e3emu_result fail(e3emu_result code, std::string message);
e3emu_result succeed();

// The worker pool, or null before e3emu_init.
WorkerPool* pool();

} // namespace e3emu
