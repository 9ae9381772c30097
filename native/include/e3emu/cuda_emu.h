// Kernel-side view of the CUDA CPU emulator. Force-included (g++ -include) before every kernel file, so the
// very same .cu sources that NVRTC compiles for the GPU compile with g++ and run on the CPU.
// Only what docs/kernel conventions allow is defined here; anything else fails to compile, loudly.
#pragma once
#ifndef __cplusplus
#error "cuda_emu.h needs C++20"
#endif

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#ifdef __CUDA_ARCH__
#error "__CUDA_ARCH__ must stay undefined under the emulator: it runs the portable kernel paths"
#endif

// Launch bounds and qualifiers. Kernels are ordinary functions. Static shared memory is declared with
// E3_SHARED (below), never with a bare __shared__, which fails to compile here so that no array escapes the poisoning.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __shared__ static_assert(false, "declare static shared memory with E3_SHARED(type, name, dims): the emulator poisons it per block");
#define __launch_bounds__(...)

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };

namespace e3emu {

// Per worker thread: the coordinates of the CUDA thread whose fiber runs right now. The block scheduler
// rewrites these before it resumes a fiber, so kernel code reads them like CUDA's special registers.
struct BuiltinState {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    unsigned char* dynamic_shared;
    // Counts the blocks this worker has started (the first is 1): static shared arrays compare it with the block that
    // last poisoned them.
    std::uint64_t block_serial;
};
// Hidden: kernels live in the same shared library, so the cheaper local-dynamic TLS model applies.
extern __attribute__((visibility("hidden"))) thread_local BuiltinState builtins;

enum class WarpOp : int { Shfl = 0, ShflUp = 1, ShflDown = 2, ShflXor = 3, Ballot = 4, SyncWarp = 5 };

// Implemented by the runtime (the block scheduler): both may suspend the calling fiber.
void syncthreads();
std::uint64_t warp_collective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width);

template <class T>
inline std::uint64_t to_lane_bits(T v) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    return bits;
}
template <class T>
inline T from_lane_bits(std::uint64_t bits) {
    T v;
    std::memcpy(&v, &bits, sizeof(T));
    return v;
}
template <class T>
inline T shuffle(WarpOp op, unsigned mask, T v, int arg, int width) {
    return from_lane_bits<T>(warp_collective(op, mask, to_lane_bits(v), arg, width));
}

} // namespace e3emu

#define threadIdx (::e3emu::builtins.thread_idx)
#define blockIdx (::e3emu::builtins.block_idx)
#define blockDim (::e3emu::builtins.block_dim)
#define gridDim (::e3emu::builtins.grid_dim)
constexpr int warpSize = 32;

namespace e3emu {
// A block's static shared memory starts undefined on a GPU. Here it would start as the previous block on this worker
// left it, which can be just what a kernel that reads before it writes expects; so the first of a block's threads to
// reach the declaration sets it to all-ones bytes (NaN in every float, -1 in every int), as the dynamic buffer is.
// No thread of the block can have written it before: each writes only after passing the declaration itself.
inline void poison_shared_once(void* storage, std::size_t bytes, std::uint64_t& poisoned_in_block) {
    if (poisoned_in_block == builtins.block_serial) return;
    std::memset(storage, 0xff, bytes);
    poisoned_in_block = builtins.block_serial;
}
} // namespace e3emu

// Static shared memory: `E3_SHARED(float, tile, [32][33]);` is `__shared__ float tile[32][33];` on a GPU. Here the
// storage lives once per worker thread, and since a block runs on one worker from start to finish that is one
// instance per block, poisoned at the block's start.
#define E3_SHARED(type, name, dims)                                \
    static thread_local type name dims;                            \
    static thread_local std::uint64_t e3emu_poisoned_##name = 0;   \
    ::e3emu::poison_shared_once(&name, sizeof(name), e3emu_poisoned_##name)

// Dynamic shared memory: one buffer per block, sized by the launch's sharedBytes.
#define E3_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(::e3emu::builtins.dynamic_shared)

inline void __syncthreads() { ::e3emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    ::e3emu::warp_collective(::e3emu::WarpOp::SyncWarp, mask, 0, 0, 32);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    return ::e3emu::shuffle(::e3emu::WarpOp::Shfl, mask, v, src_lane, width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::e3emu::shuffle(::e3emu::WarpOp::ShflUp, mask, v, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return ::e3emu::shuffle(::e3emu::WarpOp::ShflDown, mask, v, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return ::e3emu::shuffle(::e3emu::WarpOp::ShflXor, mask, v, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return static_cast<unsigned>(::e3emu::warp_collective(::e3emu::WarpOp::Ballot, mask, predicate != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
// Every participating lane is in mask, so "all" means the vote covers the whole mask.
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }

// Atomics: blocks run concurrently on worker threads, so these must be real hardware atomics.
inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
template <class T>
inline T e3emu_atomic_max(T* p, T v) {
    std::atomic_ref<T> ref(*p);
    T old = ref.load();
    while (old < v && !ref.compare_exchange_weak(old, v)) {
    }
    return old;
}
inline int atomicMax(int* p, int v) { return e3emu_atomic_max(p, v); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return e3emu_atomic_max(p, v); }
inline int atomicExch(int* p, int v) { return std::atomic_ref<int>(*p).exchange(v); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).exchange(v); }
inline unsigned long long atomicExch(unsigned long long* p, unsigned long long v) {
    return std::atomic_ref<unsigned long long>(*p).exchange(v);
}
inline float atomicExch(float* p, float v) { return std::atomic_ref<float>(*p).exchange(v); }
template <class T>
inline T e3emu_atomic_cas(T* p, T expected, T desired) {
    std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
    return expected; // holds the old value whether or not the swap happened
}
inline int atomicCAS(int* p, int c, int v) { return e3emu_atomic_cas(p, c, v); }
inline unsigned atomicCAS(unsigned* p, unsigned c, unsigned v) { return e3emu_atomic_cas(p, c, v); }
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long c, unsigned long long v) {
    return e3emu_atomic_cas(p, c, v);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// Math and bit intrinsics. The fast-math variants map to the accurate libm functions.
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __fdividef(float a, float b) { return a / b; }
constexpr unsigned __float_as_uint(float x) { return __builtin_bit_cast(unsigned, x); }
constexpr float __uint_as_float(unsigned x) { return __builtin_bit_cast(float, x); }
constexpr int __float_as_int(float x) { return __builtin_bit_cast(int, x); }
constexpr float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
constexpr int __popc(unsigned x) { return __builtin_popcount(x); }
constexpr int __ffs(int x) { return __builtin_ffs(x); }

// CUDA's min/max overloads: integer pairs compare in their common type, floating pairs behave like fminf/fmaxf.
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
constexpr std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmin(static_cast<C>(a), static_cast<C>(b));
    else return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(a) : static_cast<C>(b);
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
constexpr std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmax(static_cast<C>(a), static_cast<C>(b));
    else return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}
