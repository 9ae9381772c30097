#include "block_runner.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace e3emu {

__attribute__((visibility("hidden"))) thread_local BuiltinState builtins{};

namespace {

thread_local BlockRunner* current_runner = nullptr;
std::atomic<bool> reverse_threads{false};

std::size_t configured_stack_bytes() {
    // Sanitizer frames carry redzones, so they need more room than ordinary ones.
#if defined(__SANITIZE_ADDRESS__)
    std::size_t kib = 512;
#else
    std::size_t kib = 256;
#endif
    if (const char* env = std::getenv("E3EMU_STACK_KB")) {
        const long value = std::strtol(env, nullptr, 10);
        if (value >= 16) kib = static_cast<std::size_t>(value);
    }
    return kib * 1024;
}

const char* op_name(WarpOp op) {
    switch (op) {
    case WarpOp::Shfl: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync/__any_sync/__all_sync";
    case WarpOp::SyncWarp: return "__syncwarp";
    }
    return "?";
}

std::string hex(unsigned value) {
    char buffer[16];
    std::snprintf(buffer, sizeof buffer, "0x%08x", value);
    return buffer;
}

std::string coords(uint3 v) {
    // snprintf rather than string concatenation, which g++ 12 at -O3 misreports under -Wrestrict.
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "(%u,%u,%u)", v.x, v.y, v.z);
    return buffer;
}

// Source lane of a shuffle for `lane`, or `lane` itself where CUDA returns the caller's own value.
unsigned shuffle_source(WarpOp op, unsigned lane, int arg, int width) {
    const unsigned w = static_cast<unsigned>(width);
    const unsigned base = lane & ~(w - 1);
    const unsigned offset = lane - base;
    switch (op) {
    case WarpOp::Shfl: return base + (static_cast<unsigned>(arg) & (w - 1));
    case WarpOp::ShflUp: return offset >= static_cast<unsigned>(arg) ? lane - static_cast<unsigned>(arg) : lane;
    case WarpOp::ShflDown:
        return offset + static_cast<unsigned>(arg) < w ? lane + static_cast<unsigned>(arg) : lane;
    case WarpOp::ShflXor: {
        const unsigned source = lane ^ static_cast<unsigned>(arg);
        return source < base + w ? source : lane; // later groups are out of reach, earlier ones are not
    }
    default: return lane;
    }
}

} // namespace

void syncthreads() {
    if (current_runner == nullptr) {
        std::fprintf(stderr, "e3emu: __syncthreads called outside a kernel launch\n");
        std::abort();
    }
    current_runner->syncthreads();
}

std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width) {
    if (current_runner == nullptr) {
        std::fprintf(stderr, "e3emu: %s called outside a kernel launch\n", op_name(op));
        std::abort();
    }
    return current_runner->warp_collective(op, mask, value, arg, width);
}

BlockRunner::BlockRunner() : stack_bytes_(configured_stack_bytes()) {}
BlockRunner::~BlockRunner() = default;

std::string BlockRunner::where(const Thread& thread) const {
    return "kernel " + std::string(kernel_->name) + " block " + coords(block_idx_) + " thread " +
           coords(thread.idx);
}

std::string BlockRunner::describe(const Thread& thread) const {
    switch (thread.state) {
    case State::NotStarted: return "has not started";
    case State::Runnable: return "is runnable";
    case State::AtBarrier: return "waits at __syncthreads #" + std::to_string(thread.barriers_passed + 1);
    case State::AtWarp: return "waits at " + std::string(op_name(thread.op)) + " with mask " + hex(thread.mask);
    case State::Done: return "has exited";
    case State::Failed: return "failed";
    }
    return "?";
}

std::unique_ptr<FiberStack> BlockRunner::acquire_stack() {
    if (free_stacks_.empty()) return std::make_unique<FiberStack>(stack_bytes_);
    auto stack = std::move(free_stacks_.back());
    free_stacks_.pop_back();
    stack->prepare_for_reuse();
    return stack;
}

void BlockRunner::release_stack(Thread& thread) {
    if (thread.stack) free_stacks_.push_back(std::move(thread.stack));
}

void BlockRunner::fiber_main(void* opaque) {
    auto* runner = static_cast<BlockRunner*>(opaque);
    sanitizer_finish_switch(nullptr, &runner->scheduler_stack_bottom_, &runner->scheduler_stack_size_);
    runner->kernel_->invoke(runner->params_);
    Thread& self = *runner->current_;
    self.state = State::Done;
    // A null fake-stack slot tells AddressSanitizer this fiber is gone for good.
    sanitizer_start_switch(nullptr, runner->scheduler_stack_bottom_, runner->scheduler_stack_size_);
    fiber_switch(self.context, runner->scheduler_context_);
    __builtin_unreachable();
}

void BlockRunner::resume(Thread& thread) {
    if (thread.state == State::NotStarted) {
        thread.stack = acquire_stack();
        fiber_make(thread.context, *thread.stack, &BlockRunner::fiber_main, this);
    }
    thread.state = State::Runnable;
    current_ = &thread;
    builtins.thread_idx = thread.idx;
    void* fake_stack = nullptr;
    sanitizer_start_switch(&fake_stack, thread.stack->bottom(), thread.stack->size());
    fiber_switch(scheduler_context_, thread.context);
    sanitizer_finish_switch(fake_stack, nullptr, nullptr);
    current_ = nullptr;
}

void BlockRunner::suspend(State state) {
    Thread& self = *current_;
    self.state = state;
    sanitizer_start_switch(&self.sanitizer_fake_stack, scheduler_stack_bottom_, scheduler_stack_size_);
    fiber_switch(self.context, scheduler_context_);
    sanitizer_finish_switch(self.sanitizer_fake_stack, &scheduler_stack_bottom_, &scheduler_stack_size_);
}

void BlockRunner::fail(const std::string& message) {
    failure_ = where(*current_) + ": " + message;
    suspend(State::Failed);
    // The scheduler abandons a failed block and never resumes its fibers.
    std::abort();
}

void BlockRunner::syncthreads() {
    if (current_ == nullptr) direct_call_blocked("__syncthreads");
    suspend(State::AtBarrier);
}

void BlockRunner::direct_call_blocked(const char* builtin) const {
    // Only reachable if the configure-time source scan missed a blocking call (e.g. hidden behind a macro
    // defined elsewhere): the thread runs on the worker's own stack and cannot be suspended.
    std::fprintf(stderr,
                 "e3emu: kernel %s called %s but its source was classified barrier-free at configure time; "
                 "mention the builtin in the kernel's .cu file so it runs on fibers\n",
                 kernel_->name, builtin);
    std::abort();
}

std::uint64_t BlockRunner::warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width) {
    if (current_ == nullptr) direct_call_blocked(op_name(op));
    Thread& self = *current_;
    const unsigned lane = self.linear % 32;
    if (((mask >> lane) & 1u) == 0)
        fail(std::string(op_name(op)) + " mask " + hex(mask) + " does not include the calling lane " +
             std::to_string(lane));
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fail(std::string(op_name(op)) + " width " + std::to_string(width) + " is not a power of two in [1, 32]");
    Warp& warp = warps_[self.linear / 32];
    if ((mask & ~warp.existing_lanes) != 0)
        fail(std::string(op_name(op)) + " mask " + hex(mask) + " names lanes that do not exist in a block of " +
             std::to_string(threads_.size()) + " threads");
    self.op = op;
    self.mask = mask;
    self.value = value;
    self.arg = arg;
    self.width = width;
    self.state = State::AtWarp;

    Collective* joined = nullptr;
    for (Collective& c : warp.active) {
        if (c.mask == mask && c.op == op) joined = &c;
        else if ((c.mask & mask) != 0) fail_mismatch(self, c);
    }
    if (joined == nullptr) {
        warp.active.push_back({op, mask, 0});
        joined = &warp.active.back();
    }
    joined->arrived |= 1u << lane;
    if (joined->arrived != mask) {
        suspend(State::AtWarp);
        return self.result;
    }
    *joined = warp.active.back();
    warp.active.pop_back();
    complete_collective(self);
    self.state = State::Runnable;
    return self.result;
}

void BlockRunner::fail_mismatch(const Thread& caller, const Collective& other) {
    const unsigned lane = static_cast<unsigned>(__builtin_ctz(other.arrived));
    fail(std::string(op_name(caller.op)) + " with mask " + hex(caller.mask) + " meets lane " + std::to_string(lane) +
         ", which waits at " + op_name(other.op) + " with mask " + hex(other.mask));
}

void BlockRunner::complete_collective(const Thread& caller) {
    const unsigned warp_base = caller.linear - caller.linear % 32;
    const unsigned mask = caller.mask;
    std::uint64_t ballot = 0;
    if (caller.op == WarpOp::Ballot) {
        for (unsigned l = 0; l < 32; ++l)
            if (((mask >> l) & 1u) != 0 && threads_[warp_base + l].value != 0) ballot |= 1ull << l;
    }
    for (unsigned l = 0; l < 32; ++l) {
        if (((mask >> l) & 1u) == 0) continue;
        Thread& lane_thread = threads_[warp_base + l];
        switch (caller.op) {
        case WarpOp::Ballot: lane_thread.result = ballot; break;
        case WarpOp::SyncWarp: lane_thread.result = 0; break;
        default: {
            // Reading a lane outside the mask is undefined in CUDA; the emulator returns the caller's value.
            const unsigned source = shuffle_source(caller.op, l, lane_thread.arg, lane_thread.width);
            const bool participates = source < 32 && ((mask >> source) & 1u) != 0;
            lane_thread.result = participates ? threads_[warp_base + source].value : lane_thread.value;
        }
        }
        if (&lane_thread != &caller) lane_thread.state = State::Runnable;
    }
}

bool BlockRunner::resolve_stall(std::string& error) {
    const Thread* exited = nullptr;
    const Thread* at_barrier = nullptr;
    for (const Thread& thread : threads_) {
        if (thread.state == State::AtWarp) {
            // A collective is only left waiting when a lane of its mask went elsewhere.
            const unsigned lane = thread.linear % 32;
            const unsigned warp_base = thread.linear - lane;
            for (unsigned l = 0; l < 32; ++l) {
                const Thread& other = threads_[warp_base + l];
                if (((thread.mask >> l) & 1u) != 0 && other.state != State::AtWarp) {
                    error = where(thread) + ": warp collective can never complete: lane " + std::to_string(lane) +
                            " " + describe(thread) + " but lane " + std::to_string(l) + " (thread " +
                            coords(other.idx) + ") " + describe(other);
                    return false;
                }
            }
            error = where(thread) + ": warp collective deadlock";
            return false;
        }
        if (thread.state == State::Done && exited == nullptr) exited = &thread;
        if (thread.state == State::AtBarrier && at_barrier == nullptr) at_barrier = &thread;
    }
    if (exited != nullptr) {
        error = where(*at_barrier) + ": barrier divergence: it " + describe(*at_barrier) + " but thread " +
                coords(exited->idx) + " has exited after passing " + std::to_string(exited->barriers_passed) +
                " barrier(s)";
        return false;
    }
    for (Thread& thread : threads_) {
        if (thread.barriers_passed != at_barrier->barriers_passed) {
            error = where(thread) + ": barrier divergence: it " + describe(thread) + " but thread " +
                    coords(at_barrier->idx) + " " + describe(*at_barrier);
            return false;
        }
    }
    for (Thread& thread : threads_) {
        ++thread.barriers_passed;
        thread.state = State::Runnable;
    }
    return true;
}

void set_thread_order(bool reverse) { reverse_threads.store(reverse, std::memory_order_relaxed); }
bool threads_in_reverse() { return reverse_threads.load(std::memory_order_relaxed); }

bool BlockRunner::run(const KernelEntry& kernel, void** params, const LaunchShape& shape, uint3 block_idx,
                      std::string& error) {
    kernel_ = &kernel;
    params_ = params;
    block_idx_ = block_idx;
    const unsigned count = shape.block.x * shape.block.y * shape.block.z;
    threads_.resize(count);
    for (unsigned i = 0; i < count; ++i) {
        Thread& thread = threads_[i];
        thread.state = State::NotStarted;
        thread.linear = i;
        thread.idx = {i % shape.block.x, (i / shape.block.x) % shape.block.y, i / (shape.block.x * shape.block.y)};
        thread.barriers_passed = 0;
    }
    warps_.resize((count + 31) / 32);
    for (unsigned w = 0; w < warps_.size(); ++w) {
        const unsigned lanes = std::min(32u, count - w * 32);
        warps_[w].existing_lanes = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        warps_[w].active.clear();
    }
    if (shape.shared_bytes != dynamic_shared_bytes_) {
        dynamic_shared_.reset(shape.shared_bytes ? new unsigned char[shape.shared_bytes] : nullptr);
        dynamic_shared_bytes_ = shape.shared_bytes;
    }
    // A block's dynamic shared memory starts undefined on a GPU. Here it would start as the previous block on this
    // worker left it, which can be just what a kernel that reads before it writes expects; all-ones bytes instead are
    // a NaN in every float and -1 in every int, so such a read shows in the results.
    if (shape.shared_bytes != 0) std::memset(dynamic_shared_.get(), 0xff, shape.shared_bytes);
    builtins.block_idx = block_idx;
    builtins.block_dim = shape.block;
    builtins.grid_dim = shape.grid;
    builtins.dynamic_shared = dynamic_shared_.get();
    ++builtins.block_serial; // static shared arrays (E3_SHARED) are poisoned again in this block
    BlockRunner* previous_runner = current_runner;
    current_runner = this;
    const bool reverse = threads_in_reverse();
    if (!kernel.may_block) {
        // Fast path: no thread can block, so each runs to completion as a plain call, no fiber, no switch.
        for (unsigned i = 0; i < count; ++i) {
            builtins.thread_idx = threads_[reverse ? count - 1 - i : i].idx;
            kernel.invoke(params);
        }
        current_runner = previous_runner;
        return true;
    }

    bool ok = true;
    unsigned finished = 0;
    while (finished < count) {
        bool progressed = false;
        for (unsigned i = 0; i < count; ++i) {
            Thread& thread = threads_[reverse ? count - 1 - i : i];
            if (thread.state != State::NotStarted && thread.state != State::Runnable) continue;
            resume(thread);
            progressed = true;
            if (thread.state == State::Failed) {
                error = failure_;
                ok = false;
                break;
            }
            if (thread.state == State::Done) {
                release_stack(thread);
                ++finished;
            }
        }
        if (!ok || finished == count) break;
        if (!progressed && !resolve_stall(error)) {
            ok = false;
            break;
        }
    }
    if (!ok) {
        // Abandon the block: its fibers stay suspended forever, their stacks go back to the pool.
        for (Thread& thread : threads_) release_stack(thread);
    }
    current_runner = previous_runner;
    return ok;
}

} // namespace e3emu
