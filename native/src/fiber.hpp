// Cooperative fibers: one per CUDA thread that is alive in a block. On x86-64 a context switch is a dozen
// instructions of hand-written assembly (the callee-saved integer registers); elsewhere
// ucontext is the portable fallback (slower: swapcontext makes a sigprocmask syscall per switch).
// AddressSanitizer is told about every switch so it tracks the right stack.
#pragma once
#include <cstddef>

#if defined(__x86_64__) && !defined(E3EMU_FORCE_UCONTEXT)
#define E3EMU_ASM_FIBERS 1
#else
#include <ucontext.h>
#endif

namespace e3emu {

using FiberEntry = void (*)(void* arg);

// A saved execution context: the stack pointer (asm) or a ucontext.
struct FiberContext {
#if defined(E3EMU_ASM_FIBERS)
    void* sp = nullptr;
#else
    ucontext_t uc{};
#endif
};

// An mmap'd stack with a PROT_NONE guard page below it, so an overflow faults instead of corrupting memory.
class FiberStack {
public:
    explicit FiberStack(std::size_t usable_bytes);
    ~FiberStack();
    FiberStack(const FiberStack&) = delete;
    FiberStack& operator=(const FiberStack&) = delete;
    void* bottom() const { return usable_; }
    std::size_t size() const { return size_; }
    // Clears sanitizer poisoning left by an earlier fiber that was abandoned mid-frame.
    void prepare_for_reuse();

private:
    void* mapping_;
    std::size_t mapping_bytes_;
    void* usable_;
    std::size_t size_;
};

// Makes `context` start entry(arg) on `stack` when first switched to; switch to it before making another
// context on this thread (the ucontext fallback hands over entry and arg through thread-locals). entry must
// never return.
void fiber_make(FiberContext& context, FiberStack& stack, FiberEntry entry, void* arg);
// Saves the running context into `from` and resumes `to`.
void fiber_switch(FiberContext& from, FiberContext& to);

// AddressSanitizer fiber annotations; no-ops in ordinary builds.
void sanitizer_start_switch(void** fake_stack_save, const void* bottom, std::size_t size);
void sanitizer_finish_switch(void* fake_stack_save, const void** old_bottom, std::size_t* old_size);

} // namespace e3emu
