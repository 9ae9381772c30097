// swiglu.cu: the gated MLP activation.
//
// Math: y = silu(g) * u = g * sigmoid(g) * u, elementwise over n values.
//   Backward: s = sigmoid(g);  du = dy * g * s;  dg = dy * u * s * (1 + g * (1 - s)).
//   bf16: computed in fp32 with silu(g) rounded to bf16 before the multiply and the product rounded again,
//   which is what torch's F.silu(g) * u does on bf16 tensors.
// Memory traffic per call: forward reads g, u and writes y: 3*n*E bytes; backward reads g, u, dy and writes
//   dg, du: 5*n*4 bytes.
// Launch shape: grid = (min(ceil(n / 256), 65536)), block = (256) for fp32; bf16 uses 16-byte accesses of 8 elements
//   when gate, up and y are 16-byte aligned, with grid = (min(ceil(n / 2048), 65536)). Grid-stride loops, so any grid
//   size is correct. y may alias g or u (each element is read before it is written by the same thread).
#include "common.cuh"

extern "C" __global__ void e3_swiglu_f32(const float* gate, const float* up, float* y, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        const float g = gate[i];
        y[i] = g * e3_sigmoid(g) * up[i];
    }
}

__device__ __forceinline__ e3_bf16 e3_swiglu_bf16_value(float g, float u)
{
    const float silu = e3_round_bf16(g * e3_sigmoid(g));
    return e3_float_to_bf16(silu * u);
}

extern "C" __global__ void e3_swiglu_bf16(const e3_bf16* gate, const e3_bf16* up, e3_bf16* y, long long n)
{
    e3_bf16_map3(gate, up, (const e3_bf16*)0, y, n, [](float g, float u, float) { return e3_swiglu_bf16_value(g, u); });
}

extern "C" __global__ void e3_swiglu_backward_f32(const float* gate, const float* up, const float* dy, float* dgate, float* dup, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        const float g = gate[i];
        const float u = up[i];
        const float d = dy[i];
        const float s = e3_sigmoid(g);
        dup[i] = d * g * s;
        dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    }
}
