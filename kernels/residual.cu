// residual.cu: the gated end of a decoder layer, h <- h + gate * ((a + m) - h).
//
// Math, elementwise over n values:   s = a + m;   h = (gate == 1) ? s : h + gate * (s - h).
//   gate == 1 stores s itself, bit for bit what an ungated layer computes (h + 1*(s - h) could differ from s in
//   the last bit). The host skips gate == 0 layers entirely, but the kernel is correct for it too.
//   bf16: s is rounded to bf16 first (torch adds two bf16 tensors), the blend is computed in fp32 and rounded once.
// Memory traffic per call: reads h, a, m and writes h: 4*n*E bytes (3*n*E when gate == 1: h is not read).
// Launch shape: grid = (min(ceil(n / 256), 65536)), block = (256); grid-stride loop, so any grid is correct.
//   h may alias a or m (each element is read before it is written by the same thread).
#include "common.cuh"

extern "C" __global__ void e3_gated_residual_f32(float* h, const float* a, const float* m, float gate, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        const float s = a[i] + m[i];
        h[i] = gate == 1.0f ? s : h[i] + gate * (s - h[i]);
    }
}

extern "C" __global__ void e3_gated_residual_bf16(e3_bf16* h, const e3_bf16* a, const e3_bf16* m, float gate, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        const e3_bf16 s = e3_float_to_bf16(e3_bf16_to_float(a[i]) + e3_bf16_to_float(m[i]));
        if (gate == 1.0f)
        {
            h[i] = s;
        }
        else
        {
            const float old = e3_bf16_to_float(h[i]);
            h[i] = e3_float_to_bf16(old + gate * (e3_bf16_to_float(s) - old));
        }
    }
}
