// Test kernel: every math, bit and conversion builtin of the kernel conventions, one output row per input.
// Bit patterns build the infinity constant, as common.cuh does. Launch: 1-D, one thread per input.
#define E3T_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float e3t_clamp(float v, float lo, float hi) { return fminf(fmaxf(v, lo), hi); }

extern "C" __global__ void e3t_intrinsics(const float* __restrict__ x, float* __restrict__ out, int n)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    const float v = x[t];
    const float a = fabsf(v) + 0.5f;
    float* o = out + 20ll * t;
    o[0] = __expf(v);
    o[1] = expf(v);
    o[2] = __logf(a);
    o[3] = logf(a);
    o[4] = log1pf(a);
    o[5] = exp2f(v);
    o[6] = sqrtf(a);
    o[7] = rsqrtf(a);
    o[8] = __fdividef(v, a);
    o[9] = e3t_clamp(v, -1.0f, 1.0f);
    o[10] = floorf(v);
    o[11] = tanhf(v);
    o[12] = __uint_as_float(__float_as_uint(v) ^ 0x80000000u);      // negation through the bits
    o[13] = __int_as_float(__float_as_int(a) + (1 << 23));           // doubling through the exponent
    o[14] = (float)__popc(__float_as_uint(v));
    o[15] = (float)__ffs(__float_as_int(v));
    o[16] = (float)min(t, 3) + (float)max((unsigned)t, 5u);
    o[17] = min(v, a) + max(v, -a);
    o[18] = v < E3T_INF ? 1.0f : 0.0f;
    o[19] = (float)max(-t, (int)(v * 4.0f));
}
