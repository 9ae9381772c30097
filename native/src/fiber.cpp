#include "fiber.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace e3emu {

FiberStack::FiberStack(std::size_t usable_bytes) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    size_ = (usable_bytes + page - 1) / page * page;
    mapping_bytes_ = size_ + page;
    mapping_ = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
    if (mapping_ == MAP_FAILED) throw std::bad_alloc();
    // Stacks grow down: the guard page sits at the lowest address.
    mprotect(mapping_, page, PROT_NONE);
    usable_ = static_cast<char*>(mapping_) + page;
}

FiberStack::~FiberStack() { munmap(mapping_, mapping_bytes_); }

void FiberStack::prepare_for_reuse() {
#if defined(__SANITIZE_ADDRESS__)
    __asan_unpoison_memory_region(usable_, size_);
#endif
}

void sanitizer_start_switch(void** fake_stack_save, const void* bottom, std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
    (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

void sanitizer_finish_switch(void* fake_stack_save, const void** old_bottom, std::size_t* old_size) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake_stack_save, old_bottom, old_size);
#else
    (void)fake_stack_save, (void)old_bottom, (void)old_size;
#endif
}

#if defined(E3EMU_ASM_FIBERS)

extern "C" void e3emu_fiber_swap(void** save_sp, void* load_sp);
extern "C" void e3emu_fiber_start();

// System V x86-64: rbx, rbp and r12-r15 are callee-saved; nothing else needs saving across a call. The ABI
// also makes MXCSR and the x87 control word callee-saved, but neither kernels (no intrinsic changes rounding
// modes) nor the runtime ever change them, and ldmxcsr/fldcw cost more than the rest of the switch, so all
// fibers of a worker simply share them. A new fiber's stack is laid out exactly as a suspended one, with
// e3emu_fiber_start as the return address; it finds the entry point in r12 and its argument in r13.
asm(R"(
    .text
    .globl e3emu_fiber_swap
    .hidden e3emu_fiber_swap
    .type e3emu_fiber_swap, @function
e3emu_fiber_swap:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size e3emu_fiber_swap, .-e3emu_fiber_swap

    .globl e3emu_fiber_start
    .hidden e3emu_fiber_start
    .type e3emu_fiber_start, @function
e3emu_fiber_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size e3emu_fiber_start, .-e3emu_fiber_start
)");

void fiber_make(FiberContext& context, FiberStack& stack, FiberEntry entry, void* arg) {
    auto top = reinterpret_cast<std::uintptr_t>(stack.bottom()) + stack.size();
    top &= ~std::uintptr_t{15};
    // The swap pops 6 registers and `ret` pops the return address (56 bytes); rsp must then be 16-byte
    // aligned at e3emu_fiber_start's call instruction, so the frame ends 16 bytes below the aligned top.
    auto* frame = reinterpret_cast<std::uint64_t*>(top - 16 - 56);
    frame[0] = 0;                                          // r15
    frame[1] = 0;                                          // r14
    frame[2] = reinterpret_cast<std::uint64_t>(arg);       // r13
    frame[3] = reinterpret_cast<std::uint64_t>(entry);     // r12
    frame[4] = 0;                                          // rbx
    frame[5] = 0;                                          // rbp
    frame[6] = reinterpret_cast<std::uint64_t>(&e3emu_fiber_start);
    context.sp = frame;
}

void fiber_switch(FiberContext& from, FiberContext& to) { e3emu_fiber_swap(&from.sp, to.sp); }

#else

namespace {
// makecontext passes only int arguments; the entry and its argument travel through these instead.
thread_local FiberEntry pending_entry;
thread_local void* pending_arg;
void ucontext_start() {
    FiberEntry entry = pending_entry;
    void* arg = pending_arg;
    entry(arg);
    std::abort();
}
} // namespace

void fiber_make(FiberContext& context, FiberStack& stack, FiberEntry entry, void* arg) {
    getcontext(&context.uc);
    context.uc.uc_stack.ss_sp = stack.bottom();
    context.uc.uc_stack.ss_size = stack.size();
    context.uc.uc_link = nullptr;
    makecontext(&context.uc, ucontext_start, 0);
    pending_entry = entry;
    pending_arg = arg;
}

void fiber_switch(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }

#endif

} // namespace e3emu
