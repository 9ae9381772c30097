// Test kernel: block sum reduction. Each thread accumulates a grid-stride slice, warps reduce with
// __shfl_down_sync, warp totals meet in static shared memory, warp 0 reduces them with __shfl_xor_sync.
// Reads n floats once, writes one float per block. Launch: any grid, block a multiple of 32 up to 1024.
extern "C" __global__ void e3t_block_reduce_sum(const float* __restrict__ x, float* __restrict__ block_sums, int n)
{
    E3_SHARED(float, warp_sums, [32]);
    float sum = 0.0f;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) sum += x[i];
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, offset);
    const int lane = threadIdx.x % warpSize;
    const int warp = threadIdx.x / warpSize;
    if (lane == 0) warp_sums[warp] = sum;
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x / warpSize;
        float total = lane < warps ? warp_sums[lane] : 0.0f;
        for (int mask = 16; mask > 0; mask >>= 1) total += __shfl_xor_sync(0xffffffffu, total, mask);
        if (lane == 0) block_sums[blockIdx.x] = total;
    }
}
