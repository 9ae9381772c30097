// residual.cu: the gated end of a decoder layer, h <- h + gate * ((a + m) - h).
//
// Math, elementwise over n values:   s = a + m;   h = (gate == 1) ? s : h + gate * (s - h).
//   gate == 1 stores s itself, bit for bit what an ungated layer computes (h + 1*(s - h) could differ from s in
//   the last bit). The host skips gate == 0 layers entirely, but the kernel is correct for it too.
//   bf16: s is rounded to bf16 first (torch adds two bf16 tensors), the blend is computed in fp32 and rounded once.
//   Backward (fp32): d_layer = gate * dOut, dh = (1 - gate) * dOut, dL/dgate = sum dOut * (a + m - h), reduced in double
//   in two stages (per-thread, a fixed per-block tree, then the host adds the blocks in order): deterministic.
//   add_inplace: y += x (gradient accumulation).
// Memory traffic per call: reads h, a, m and writes h: 4*n*E bytes (3*n*E when gate == 1: h is not read);
//   backward reads h, a, m, dOut and writes dh, d_layer: 6*n*4 bytes (+8 per block); add_inplace 3*n*4.
// Launch shape: grid = (min(ceil(n / 256), 65536)), block = (256); grid-stride loop, so any grid is correct. The bf16
//   forward uses 16-byte accesses of 8 elements when h, a and m are 16-byte aligned, with grid = (min(ceil(n / 2048),
//   65536)). h may alias a or m (each element is read before it is written by the same thread).
#include "common.cuh"

extern "C" __global__ void e3_gated_residual_f32(float* h, const float* a, const float* m, float gate, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        h[i] = e3_gated_residual_value(gate == 1.0f ? 0.0f : h[i], a[i], m[i], gate, h);
    }
}

// A gate-1 call passes no h to read (see e3_bf16_map3): old is then 0 and unused.
extern "C" __global__ void e3_gated_residual_bf16(e3_bf16* h, const e3_bf16* a, const e3_bf16* m, float gate, long long n)
{
    e3_bf16_map3(a, m, gate == 1.0f ? (const e3_bf16*)0 : h, h, n, e3_gated_residual_bf16_map{gate});
}

// Backward of the gated residual, given dOut = dL/dh_out (fp32):
//   d_layer = gate * dOut   (into the ungated layer output a + m);   dh = (1 - gate) * dOut   (dh may alias dOut)
//   dL/dgate = sum_i dOut_i * (a_i + m_i - h_i), reduced without atomics: each thread sums its grid-stride elements
//   in double, the block adds its threads' sums in a fixed tree, and writes the block total split into two floats
//   partial[2*block] + partial[2*block + 1] (hi + lo, ~48 significant bits); the host adds the blocks in order in
//   double. Launch: grid = (E3_RESIDUAL_BWD_BLOCKS or fewer), block = (256) exactly (the tree assumes it).
#define E3_RESIDUAL_BWD_THREADS 256

extern "C" __global__ void e3_gated_residual_backward_f32(const float* h, const float* a, const float* m, const float* d_out, float* dh, float* d_layer, float* partial, float gate, long long n)
{
    E3_SHARED(double, sums, [E3_RESIDUAL_BWD_THREADS]);
    const long long stride = (long long)gridDim.x * blockDim.x;
    double sum = 0.0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        const float g = d_out[i];
        sum += (double)g * ((double)a[i] + m[i] - h[i]);
        d_layer[i] = gate * g;
        dh[i] = (1.0f - gate) * g;
    }
    sums[threadIdx.x] = sum;
    __syncthreads();
    for (int half = E3_RESIDUAL_BWD_THREADS / 2; half > 0; half >>= 1)
    {
        if ((int)threadIdx.x < half)
            sums[threadIdx.x] += sums[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0)
    {
        const float hi = (float)sums[0];
        partial[2 * blockIdx.x] = hi;
        partial[2 * blockIdx.x + 1] = (float)(sums[0] - (double)hi);
    }
}

// y += x elementwise over n values (gradient accumulation); grid-stride like the forward.
extern "C" __global__ void e3_add_inplace_f32(float* y, const float* x, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] += x[i];
}
