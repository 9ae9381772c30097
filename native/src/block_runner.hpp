// Runs one thread block on the calling worker thread with CUDA's semantics: every CUDA thread is a fiber,
// __syncthreads is a true barrier and warp collectives rendezvous the lanes their mask names. Threads that
// never block run to completion one after another on one reused stack; kernels whose source holds no
// blocking builtin at all skip fibers entirely and run each thread as a plain call (the fast path).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "e3emu/cuda_emu.h"
#include "fiber.hpp"
#include "registration.hpp"

namespace e3emu {

// Whether blocks run their threads last to first (e3emu_set_thread_order); read at the start of each block.
void set_thread_order(bool reverse);
bool threads_in_reverse();

struct LaunchShape {
    dim3 grid;
    dim3 block;
    unsigned shared_bytes;
};

class BlockRunner {
public:
    BlockRunner();
    ~BlockRunner();
    BlockRunner(const BlockRunner&) = delete;
    BlockRunner& operator=(const BlockRunner&) = delete;

    // Runs block `block_idx` of the launch to completion. Returns false and fills `error` when the block
    // diverges on a barrier or misuses a warp collective; the block's remaining fibers are abandoned.
    bool run(const KernelEntry& kernel, void** params, const LaunchShape& shape, uint3 block_idx,
             std::string& error);

    // Called by kernel code through cuda_emu.h on the runner of the current worker thread.
    void syncthreads();
    std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width);

private:
    enum class State : std::uint8_t { NotStarted, Runnable, AtBarrier, AtWarp, Done, Failed };

    struct Thread {
        State state = State::NotStarted;
        uint3 idx{};
        unsigned linear = 0;
        unsigned barriers_passed = 0;
        FiberContext context;
        std::unique_ptr<FiberStack> stack;
        void* sanitizer_fake_stack = nullptr;
        // The warp collective this thread waits in, and its result once the collective completes.
        WarpOp op = WarpOp::SyncWarp;
        unsigned mask = 0;
        int arg = 0;
        int width = 32;
        std::uint64_t value = 0;
        std::uint64_t result = 0;
    };

    // A warp collective some lanes have reached: lanes of `mask` that have arrived so far.
    struct Collective {
        WarpOp op;
        unsigned mask;
        unsigned arrived;
    };
    // Collectives in progress in one warp; disjoint masks may be in flight at once (e.g. even and odd lanes).
    struct Warp {
        unsigned existing_lanes = 0;
        std::vector<Collective> active;
    };

    static void fiber_main(void* runner);
    void resume(Thread& thread);
    void suspend(State state);
    [[noreturn]] void fail(const std::string& message);
    bool resolve_stall(std::string& error);
    void release_stack(Thread& thread);
    std::unique_ptr<FiberStack> acquire_stack();
    std::string describe(const Thread& thread) const;
    std::string where(const Thread& thread) const;
    void complete_collective(const Thread& caller);
    [[noreturn]] void fail_mismatch(const Thread& caller, const Collective& other);
    [[noreturn]] void direct_call_blocked(const char* builtin) const;

    const KernelEntry* kernel_ = nullptr;
    void** params_ = nullptr;
    uint3 block_idx_{};
    std::vector<Thread> threads_;
    std::vector<Warp> warps_;
    std::vector<std::unique_ptr<FiberStack>> free_stacks_;
    std::size_t stack_bytes_;
    Thread* current_ = nullptr;
    FiberContext scheduler_context_;
    const void* scheduler_stack_bottom_ = nullptr;
    std::size_t scheduler_stack_size_ = 0;
    std::string failure_;
    // Exactly sharedBytes long, so AddressSanitizer sees overruns of dynamic shared memory.
    std::unique_ptr<unsigned char[]> dynamic_shared_;
    unsigned dynamic_shared_bytes_ = 0;
};

} // namespace e3emu
