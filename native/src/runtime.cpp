// Initialisation, errors, the compiled-in module registry and kernel launches.
#include "runtime.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>

#include "block_runner.hpp"
#include "registration.hpp"

struct e3emu_module_st {
    std::string name;
    std::vector<e3emu::KernelEntry*> kernels;
};

namespace e3emu {
namespace {

thread_local std::string last_error;

// Filled by static constructors before main/dlopen returns; read only after e3emu_init.
KernelEntry* registered_kernels = nullptr;

struct Runtime {
    std::unique_ptr<WorkerPool> pool;
    std::vector<std::unique_ptr<BlockRunner>> runners; // one per worker
    std::map<std::string, e3emu_module_st> modules;
    std::set<const void*> functions;
    std::set<const void*> module_handles;
};

std::mutex init_mutex;
std::atomic<Runtime*> runtime{nullptr};

unsigned worker_count_from_env() {
    unsigned workers = std::max(1u, std::thread::hardware_concurrency());
    if (const char* env = std::getenv("E3EMU_WORKERS")) {
        const long value = std::strtol(env, nullptr, 10);
        if (value >= 1 && value <= 1024) workers = static_cast<unsigned>(value);
    }
    return workers;
}

Runtime* require_runtime() { return runtime.load(std::memory_order_acquire); }


// CUDA's limits for compute capability 9.0; kernels that fit a GPU fit the emulator.
constexpr unsigned max_threads_per_block = 1024;
constexpr unsigned max_block_z = 64;
constexpr unsigned max_grid_yz = 65535;
constexpr unsigned max_shared_bytes = 227 * 1024;

} // namespace

void register_kernel(KernelEntry* entry) {
    entry->next = registered_kernels;
    registered_kernels = entry;
}

e3emu_result fail(e3emu_result code, std::string message) {
    last_error = std::move(message);
    return code;
}

e3emu_result succeed() { return E3EMU_SUCCESS; }

e3emu_result thread_order_from_env(e3emu_thread_order& order) {
    order = E3EMU_THREAD_ORDER_FORWARD;
    const char* env = std::getenv("E3EMU_THREAD_ORDER");
    if (env == nullptr || *env == '\0' || std::strcmp(env, "forward") == 0) return E3EMU_SUCCESS;
    if (std::strcmp(env, "reverse") == 0) {
        order = E3EMU_THREAD_ORDER_REVERSE;
        return E3EMU_SUCCESS;
    }
    return fail(E3EMU_ERROR_INVALID_VALUE, std::string("e3emu_init: E3EMU_THREAD_ORDER=") + env + ": expected forward or reverse");
}

WorkerPool* pool() {
    Runtime* rt = require_runtime();
    return rt ? rt->pool.get() : nullptr;
}

} // namespace e3emu

using namespace e3emu;

extern "C" {

e3emu_result e3emu_init(unsigned flags) {
    if (flags != 0) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_init: flags must be 0, got " + std::to_string(flags));
    std::lock_guard lock(init_mutex);
    if (runtime.load() != nullptr) return succeed();
    e3emu_thread_order order;
    if (thread_order_from_env(order) != E3EMU_SUCCESS) return E3EMU_ERROR_INVALID_VALUE;
    set_thread_order(order == E3EMU_THREAD_ORDER_REVERSE);
    auto* rt = new Runtime();
    try {
        rt->pool = std::make_unique<WorkerPool>(worker_count_from_env());
        for (unsigned w = 0; w < rt->pool->size(); ++w) rt->runners.push_back(std::make_unique<BlockRunner>());
    } catch (const std::exception& e) {
        delete rt;
        return fail(E3EMU_ERROR_OUT_OF_MEMORY, std::string("e3emu_init: cannot start worker pool: ") + e.what());
    }
    for (KernelEntry* k = registered_kernels; k != nullptr; k = k->next) {
        auto& module = rt->modules[k->module];
        module.name = k->module;
        module.kernels.push_back(k);
        rt->functions.insert(k);
    }
    for (auto& [name, module] : rt->modules) rt->module_handles.insert(&module);
    // The runtime lives until process exit: worker threads must not be joined from a static destructor.
    runtime.store(rt, std::memory_order_release);
    return succeed();
}

e3emu_result e3emu_set_thread_order(e3emu_thread_order order) {
    if (order != E3EMU_THREAD_ORDER_FORWARD && order != E3EMU_THREAD_ORDER_REVERSE)
        return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_set_thread_order: unknown order " + std::to_string(static_cast<int>(order)));
    set_thread_order(order == E3EMU_THREAD_ORDER_REVERSE);
    return succeed();
}

e3emu_thread_order e3emu_thread_order_in_use(void) {
    return threads_in_reverse() ? E3EMU_THREAD_ORDER_REVERSE : E3EMU_THREAD_ORDER_FORWARD;
}

int e3emu_worker_count(void) {
    WorkerPool* p = pool();
    return p ? static_cast<int>(p->size()) : 0;
}

const char* e3emu_last_error(void) { return last_error.c_str(); }

const char* e3emu_error_name(e3emu_result code) {
    switch (code) {
    case E3EMU_SUCCESS: return "CUDA_SUCCESS";
    case E3EMU_ERROR_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case E3EMU_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case E3EMU_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case E3EMU_ERROR_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case E3EMU_ERROR_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case E3EMU_ERROR_NOT_READY: return "CUDA_ERROR_NOT_READY";
    case E3EMU_ERROR_LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case E3EMU_ERROR_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
    case E3EMU_ERROR_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    }
    return "CUDA_ERROR_UNKNOWN";
}

e3emu_result e3emu_module_load(e3emu_module* module, const char* name) {
    Runtime* rt = require_runtime();
    if (!rt) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_module_load: call e3emu_init first");
    if (!module || !name) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_module_load: null argument");
    auto found = rt->modules.find(name);
    if (found == rt->modules.end()) {
        std::string known;
        for (auto& [n, m] : rt->modules) known += (known.empty() ? "" : ", ") + n;
        return fail(E3EMU_ERROR_NOT_FOUND, "e3emu_module_load: no module '" + std::string(name) +
                                               "' is compiled into this library (modules: " +
                                               (known.empty() ? "none" : known) + ")");
    }
    *module = &found->second;
    return succeed();
}

e3emu_result e3emu_module_unload(e3emu_module module) {
    Runtime* rt = require_runtime();
    if (!rt) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_module_unload: call e3emu_init first");
    if (!rt->module_handles.count(module))
        return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_module_unload: not a module handle");
    return succeed();
}

e3emu_result e3emu_module_get_function(e3emu_function* function, e3emu_module module, const char* name) {
    Runtime* rt = require_runtime();
    if (!rt) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_module_get_function: call e3emu_init first");
    if (!function || !name) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_module_get_function: null argument");
    if (!rt->module_handles.count(module))
        return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_module_get_function: not a module handle");
    for (KernelEntry* k : module->kernels) {
        if (std::strcmp(k->name, name) == 0) {
            *function = reinterpret_cast<e3emu_function>(k);
            return succeed();
        }
    }
    return fail(E3EMU_ERROR_NOT_FOUND, "e3emu_module_get_function: module '" + module->name +
                                           "' has no kernel named '" + name + "'");
}

e3emu_result e3emu_function_param_count(e3emu_function function, int* count) {
    Runtime* rt = require_runtime();
    if (!rt) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_function_param_count: call e3emu_init first");
    if (!rt->functions.count(function))
        return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_function_param_count: not a function handle");
    if (!count) return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_function_param_count: null count");
    *count = reinterpret_cast<KernelEntry*>(function)->param_count;
    return succeed();
}

e3emu_result e3emu_launch_check(e3emu_function function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                                unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                                void** params) {
    Runtime* rt = require_runtime();
    if (!rt) return fail(E3EMU_ERROR_NOT_INITIALIZED, "e3emu_launch: call e3emu_init first");
    if (!rt->functions.count(function)) return fail(E3EMU_ERROR_INVALID_HANDLE, "e3emu_launch: not a function handle");
    const KernelEntry& kernel = *reinterpret_cast<KernelEntry*>(function);
    const std::string name = kernel.name;
    const unsigned long long threads = 1ull * block_x * block_y * block_z;
    if (grid_x == 0 || grid_y == 0 || grid_z == 0 || grid_y > max_grid_yz || grid_z > max_grid_yz)
        return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_launch " + name + ": invalid grid (" + std::to_string(grid_x) +
                                                   "," + std::to_string(grid_y) + "," + std::to_string(grid_z) + ")");
    if (threads == 0 || threads > max_threads_per_block || block_z > max_block_z)
        return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_launch " + name + ": invalid block (" +
                                                   std::to_string(block_x) + "," + std::to_string(block_y) + "," +
                                                   std::to_string(block_z) + "): at most 1024 threads, z <= 64");
    if (shared_bytes > max_shared_bytes)
        return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_launch " + name + ": sharedBytes " +
                                                   std::to_string(shared_bytes) + " exceeds " +
                                                   std::to_string(max_shared_bytes));
    if (kernel.param_count > 0 && params == nullptr)
        return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_launch " + name + ": kernel takes " +
                                                   std::to_string(kernel.param_count) + " parameters but params is null");
    for (int i = 0; i < kernel.param_count; ++i)
        if (params[i] == nullptr)
            return fail(E3EMU_ERROR_INVALID_VALUE, "e3emu_launch " + name + ": params[" + std::to_string(i) + "] is null");
    return succeed();
}

e3emu_result e3emu_launch(e3emu_function function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                          unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                          e3emu_stream stream, void** params) {
    (void)stream; // execution is synchronous; stream handles are validated by the stream functions
    if (const e3emu_result checked =
            e3emu_launch_check(function, grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_bytes, params))
        return checked;
    Runtime* rt = require_runtime();
    const KernelEntry& kernel = *reinterpret_cast<KernelEntry*>(function);
    const std::string name = kernel.name;

    const LaunchShape shape{{grid_x, grid_y, grid_z}, {block_x, block_y, block_z}, shared_bytes};
    const std::size_t blocks = 1ull * grid_x * grid_y * grid_z;
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::string error;
    e3emu_result code = E3EMU_SUCCESS;
    rt->pool->parallel_for(blocks, [&](std::size_t b, unsigned worker) {
        if (failed.load(std::memory_order_relaxed)) return;
        const uint3 block_idx{static_cast<unsigned>(b % grid_x), static_cast<unsigned>((b / grid_x) % grid_y),
                              static_cast<unsigned>(b / (1ull * grid_x * grid_y))};
        std::string block_error;
        e3emu_result block_code = E3EMU_ERROR_LAUNCH_FAILED;
        bool ok;
        try {
            ok = rt->runners[worker]->run(kernel, params, shape, block_idx, block_error);
        } catch (const std::bad_alloc&) {
            ok = false;
            block_code = E3EMU_ERROR_LAUNCH_OUT_OF_RESOURCES;
            block_error = "kernel " + name + ": out of memory for fiber stacks";
        }
        if (!ok && !failed.exchange(true)) {
            std::lock_guard lock(error_mutex);
            error = std::move(block_error);
            code = block_code;
        }
    });
    if (failed.load()) return fail(code, error);
    return succeed();
}

} // extern "C"
