// Test kernel for dynamic shared memory.
// Reverses each block's segment of `per_block` floats through dynamic shared memory sized by the launch
// (per_block * 4 bytes). The segment may be longer than the block, so threads loop.
extern "C" __global__ void e3t_dynamic_reverse(const float* __restrict__ in, float* __restrict__ out, int per_block)
{
    E3_DYNAMIC_SHARED(float, segment);
    const long long base = (long long)blockIdx.x * per_block;
    for (int i = threadIdx.x; i < per_block; i += blockDim.x) segment[i] = in[base + i];
    __syncthreads();
    for (int i = threadIdx.x; i < per_block; i += blockDim.x) out[base + i] = segment[per_block - 1 - i];
}
