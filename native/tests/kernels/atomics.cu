// Test kernel: atomics from many blocks on global and shared memory. Each thread handles one value;
// block totals go through shared memory atomics first. Launch: any 1-D shape.
extern "C" __global__ void e3t_atomics(const int* __restrict__ values, int n, int* sum, int* max_value,
                                       unsigned* max_unsigned, float* float_sum, unsigned long long* cas_count,
                                       int* exchange_slot, long long* exchanged_sum)
{
    E3_SHARED(int, block_sum, );
    if (threadIdx.x == 0) block_sum = 0;
    __syncthreads();
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) {
        const int v = values[t];
        atomicAdd(&block_sum, v);
        atomicMax(max_value, v);
        atomicMax(max_unsigned, (unsigned)v * 2654435761u);
        atomicAdd(float_sum, (float)v);
        // Increment through a CAS loop, the pattern used for atomics the hardware lacks.
        unsigned long long seen = *cas_count;
        for (;;) {
            const unsigned long long old = atomicCAS(cas_count, seen, seen + 1);
            if (old == seen) break;
            seen = old;
        }
        // Every value ends up exactly once: returned to some thread, or left in the slot.
        const int previous = atomicExch(exchange_slot, t);
        atomicAdd((unsigned long long*)exchanged_sum, (unsigned long long)(long long)previous);
    }
    __syncthreads();
    if (threadIdx.x == 0) atomicAdd(sum, block_sum);
    __threadfence();
}
