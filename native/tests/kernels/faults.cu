// Test kernels that are wrong on purpose; the emulator must report them, never hang.

#include "../../../kernels/common.cuh" // e3_load16, as the product kernels use it

// Threads past n leave before the barrier the others wait at: barrier divergence.
extern "C" __global__ void e3t_barrier_divergence(float* x, int n)
{
    if ((int)threadIdx.x >= n) return;
    // Each block writes its own elements: two blocks sharing them would race on the += when they run concurrently.
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    x[i] = 1.0f;
    __syncthreads();
    x[i] += 1.0f;
}

// Lane 5 exits before the full-warp shuffle the other lanes wait in.
extern "C" __global__ void e3t_shuffle_missing_lane(float* x)
{
    if (threadIdx.x % 32 == 5) return;
    x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, x[threadIdx.x], 1);
}

// Thread 0 writes one element past the end of x (caught by AddressSanitizer in native/build-asan).
extern "C" __global__ void e3t_out_of_bounds(float* x, int n)
{
    if (threadIdx.x == 0 && blockIdx.x == 0) x[n] = 1.0f;
}

// Thread 0 loads 16 bytes through e3_load16 from 4 bytes past an aligned address: a misaligned-address fault on a GPU,
// which x86 would forgive (caught by UBSan's alignment check in native/build-asan).
extern "C" __global__ void e3t_misaligned_vector_load(float* x)
{
    if (threadIdx.x == 0 && blockIdx.x == 0)
    {
        const e3_vec16 v = e3_load16(x + 1);
        x[0] = __uint_as_float(v.word[0]);
    }
}

// Records the order in which threads leave a barrier (the fiber path's schedule), and reads a lower neighbour's
// shared slot with the barrier that should separate the write from the read missing: right when threads run in
// increasing order, stale when they run in decreasing order. Launch: one block of at most 256 threads.
extern "C" __global__ void e3t_missing_barrier(int* neighbour, int* order, int* counter)
{
    E3_SHARED(int, slots, [256]);
    const int t = threadIdx.x;
    slots[t] = 0;
    __syncthreads();
    order[t] = atomicAdd(counter, 1);
    slots[t] = t + 1;
    // A __syncthreads() belongs here.
    neighbour[t] = t > 0 ? slots[t - 1] : -1;
}

// Copies its dynamic shared memory out without writing it first: what a GPU gives here is undefined, and the emulator
// makes it all-ones bytes rather than whatever the previous block left. Launch: blocks of n threads, n ints of shared
// memory; out holds gridDim.x * n ints. fill is written into shared memory after the copy, for the next block to see.
extern "C" __global__ void e3t_read_before_write_shared(int* out, int fill)
{
    E3_DYNAMIC_SHARED(int, slots);
    const int t = threadIdx.x;
    out[blockIdx.x * blockDim.x + t] = slots[t];
    slots[t] = fill;
}

// The same with static shared memory (E3_SHARED): every block's copy must be all-ones bytes too, although the array
// lives once per worker and the previous block on it left fill there.
extern "C" __global__ void e3t_read_before_write_static_shared(int* out, int fill)
{
    E3_SHARED(int, slots, [64]);
    const int t = threadIdx.x;
    out[blockIdx.x * blockDim.x + t] = slots[t];
    slots[t] = fill;
}

// The poisoning happens once per block, before any of its threads writes: thread 0 writes, every thread reads after the
// barrier and must see the write, in either thread order. Launch: blocks of up to 64 threads; out holds one int per thread.
extern "C" __global__ void e3t_static_shared_write_survives(int* out)
{
    E3_SHARED(int, value, [1]);
    if (threadIdx.x == 0) value[0] = 1000 + (int)blockIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = value[0];
}
