// Test kernel for e3_mma_bf16_16x8x16 (kernels/common.cuh): one warp loads A, B and C into fragments exactly as the PTX
// ISA lays them out for mma.m16n8k16 .bf16 (the layout the hardware instruction expects), multiplies, and stores D by
// the same rule. Against a plain matrix product this pins the emulator's version of the instruction to that layout.
// Launch: 1 block of 32 threads. a: A [16][16] row-major bf16; b: B by columns, [8][16] bf16 (b[n*16 + k] = B[k][n]);
// c, d: [16][8] fp32 row-major.
#include "../../../kernels/common.cuh"

__device__ __forceinline__ unsigned e3t_pair(const unsigned short* p)
{
    return (unsigned)p[0] | ((unsigned)p[1] << 16);
}

extern "C" __global__ void e3t_mma_bf16_16x8x16(const unsigned short* a, const unsigned short* b, const float* c, float* d)
{
    const int lane = threadIdx.x & 31;
    const int g = lane >> 2;
    const int t = lane & 3;
    const unsigned af[4] = {e3t_pair(a + g * 16 + 2 * t), e3t_pair(a + (g + 8) * 16 + 2 * t), e3t_pair(a + g * 16 + 2 * t + 8),
        e3t_pair(a + (g + 8) * 16 + 2 * t + 8)};
    const unsigned bf[2] = {e3t_pair(b + g * 16 + 2 * t), e3t_pair(b + g * 16 + 2 * t + 8)};
    float acc[4] = {c[g * 8 + 2 * t], c[g * 8 + 2 * t + 1], c[(g + 8) * 8 + 2 * t], c[(g + 8) * 8 + 2 * t + 1]};
    e3_mma_bf16_16x8x16(acc, af, bf);
    __syncwarp();
    d[g * 8 + 2 * t] = acc[0];
    d[g * 8 + 2 * t + 1] = acc[1];
    d[(g + 8) * 8 + 2 * t] = acc[2];
    d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}
