// Test kernel for 3-D launch shapes. Mentions no barrier or warp builtin, so the emulator runs it on its
// direct-call fast path.
// Each thread of a 3-D grid of 3-D blocks writes its 12 coordinates at its global linear index.
extern "C" __global__ void e3t_coordinates(unsigned* __restrict__ out)
{
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned* o = out + 12ull * (block * (blockDim.x * blockDim.y * blockDim.z) + thread);
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
    o[6] = blockDim.x; o[7] = blockDim.y; o[8] = blockDim.z;
    o[9] = gridDim.x; o[10] = gridDim.y; o[11] = gridDim.z;
}
