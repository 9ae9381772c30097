// Test kernels for warp collectives with partial masks and sub-warp widths. One output element per thread.
// Launch: 1-D blocks of whole warps.

// Even lanes vote together; odd lanes vote in two groups (low and high half of the warp).
extern "C" __global__ void e3t_warp_vote(const int* __restrict__ predicate, unsigned* __restrict__ ballot,
                                         int* __restrict__ any, int* __restrict__ all)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int lane = threadIdx.x % 32;
    unsigned mask;
    if (lane % 2 == 0) mask = 0x55555555u;
    else if (lane < 16) mask = 0x0000aaaau;
    else mask = 0xaaaa0000u;
    const int p = predicate[t];
    ballot[t] = __ballot_sync(mask, p);
    any[t] = __any_sync(mask, p);
    all[t] = __all_sync(mask, p);
}

// Shuffles within segments of 16 lanes: up/down by delta, xor with lane_mask, broadcast of src_lane.
extern "C" __global__ void e3t_shfl_width16(const float* __restrict__ in, float* __restrict__ up,
                                            float* __restrict__ down, float* __restrict__ xor_out,
                                            float* __restrict__ broadcast, int delta, int lane_mask, int src_lane)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const float v = in[t];
    up[t] = __shfl_up_sync(0xffffffffu, v, delta, 16);
    down[t] = __shfl_down_sync(0xffffffffu, v, delta, 16);
    xor_out[t] = __shfl_xor_sync(0xffffffffu, v, lane_mask, 16);
    broadcast[t] = __shfl_sync(0xffffffffu, v, src_lane, 16);
}

// Integer and 64-bit shuffles plus __syncwarp between shared-memory phases of one warp.
extern "C" __global__ void e3t_warp_rotate(const long long* __restrict__ in, long long* __restrict__ out)
{
    E3_SHARED(long long, staged, [32]);
    const int lane = threadIdx.x % 32;
    staged[lane] = in[threadIdx.x];
    __syncwarp();
    const long long neighbour = staged[(lane + 1) % 32];
    __syncwarp();
    out[threadIdx.x] = __shfl_sync(0xffffffffu, neighbour, (lane + 31) % 32);
}
