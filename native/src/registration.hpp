// Kernel registration, included by the per-kernel-file sources that cmake generates. The trampoline that
// unpacks cuLaunchKernel-style `void** params` is deduced from the kernel's function type, so no signature
// is ever written by hand.
#pragma once
#include <cstddef>
#include <type_traits>
#include <utility>

namespace e3emu {

using KernelTrampoline = void (*)(void** params);

struct KernelEntry {
    const char* module;   // kernel file stem
    const char* name;     // extern "C" entry point
    KernelTrampoline invoke;
    int param_count;
    // False when neither the kernel's file nor a header next to it mentions a barrier or warp collective:
    // its threads then run as plain calls on the worker's stack, one after another (see block_runner.cpp).
    bool may_block;
    KernelEntry* next;    // intrusive list filled by static constructors, read after e3emu_init
};

// Defined in the runtime; called from static initialisers of the generated sources.
void register_kernel(KernelEntry* entry);

template <class T>
inline constexpr bool is_kernel_scalar_v =
    std::is_same_v<T, float> || std::is_same_v<T, int> || std::is_same_v<T, unsigned int> ||
    std::is_same_v<T, long long> || std::is_same_v<T, unsigned long long>;

template <class T>
inline constexpr bool is_kernel_pointee_v =
    is_kernel_scalar_v<std::remove_cv_t<T>> || std::is_same_v<std::remove_cv_t<T>, unsigned short>;

template <class T>
inline constexpr bool is_kernel_param_v =
    is_kernel_scalar_v<T> || (std::is_pointer_v<T> && is_kernel_pointee_v<std::remove_pointer_t<T>>);

template <class... Args, std::size_t... I>
inline void call_unpacked(void (*kernel)(Args...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<Args>*>(params[I])...);
}

template <class... Args>
constexpr int kernel_arity(void (*)(Args...)) {
    static_assert((is_kernel_param_v<Args> && ...),
                  "kernel entry points take only pointers to float/int/unsigned/unsigned short/long long/"
                  "unsigned long long and the scalars float/int/unsigned/long long (kernel conventions)");
    return static_cast<int>(sizeof...(Args));
}

template <auto Kernel>
void trampoline(void** params) {
    call_unpacked(Kernel, params, std::make_index_sequence<kernel_arity(Kernel)>{});
}

struct KernelRegistrar {
    KernelEntry entry;
    KernelRegistrar(const char* module, const char* name, KernelTrampoline invoke, int param_count, bool may_block)
        : entry{module, name, invoke, param_count, may_block, nullptr} {
        register_kernel(&entry);
    }
};

} // namespace e3emu

#define E3EMU_REGISTER_KERNEL(module /* string literal */, name, may_block)                             \
    static ::e3emu::KernelRegistrar e3emu_registrar_##name(module, #name, &::e3emu::trampoline<&name>, \
                                                           ::e3emu::kernel_arity(&name), may_block);
