// common.cuh: the one header every kernel in kernels/ includes.
//
// Compiled two ways: by NVRTC for a GPU (__CUDACC_RTC__ defined), and by g++ for the CPU emulator, with
// native/include/e3emu/cuda_emu.h force-included first (neither __CUDACC_RTC__ nor __CUDA_ARCH__ defined).
// Anything only NVRTC understands therefore lives under #ifdef __CUDACC_RTC__; everything else is plain C++
// over the builtins listed in the kernel conventions.
#pragma once

#ifdef __CUDACC_RTC__
// Shared memory, static and dynamic: the emulator defines its own versions of these macros (per-block storage, set
// to all-ones bytes at each block's start, so that a read before the first write shows in the results).
#define E3_SHARED(type, name, dims) __shared__ type name dims
#define E3_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

// bf16 travels as its raw bits so that no toolkit header (cuda_bf16.h) is needed.
typedef unsigned short e3_bf16;

// Special values built from bit patterns: no toolkit header defines them under NVRTC, and the emulator
// must produce the very same bits.
#define E3_INF (__uint_as_float(0x7f800000u))
#define E3_NEG_INF (__uint_as_float(0xff800000u))
#define E3_NAN (__uint_as_float(0x7fc00000u))

#define E3_FULL_MASK 0xffffffffu

// ---- bf16 <-> fp32 -------------------------------------------------------------------------------------

__device__ __forceinline__ float e3_bf16_to_float(e3_bf16 bits)
{
    return __uint_as_float(((unsigned int)bits) << 16);
}

// Round to nearest, ties to even, like torch's .to(torch.bfloat16). A NaN keeps its sign and top payload
// bits and is made quiet, so it can never round into an infinity.
__device__ __forceinline__ e3_bf16 e3_float_to_bf16(float value)
{
    unsigned int bits = __float_as_uint(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (e3_bf16)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (e3_bf16)(bits >> 16);
}

// Rounds an fp32 value to the nearest bf16 and back: the value a bf16 tensor would hold.
__device__ __forceinline__ float e3_round_bf16(float value)
{
    return e3_bf16_to_float(e3_float_to_bf16(value));
}

// Element access for kernels templated over the storage type: loads widen to fp32, stores narrow (round to nearest
// even for bf16), and e3_as_stored gives the value a tensor of that dtype would hold (the second argument only picks
// the dtype), so one body computes the fp32 result exactly and rounds a bf16 one where torch's bf16 modules do.
__device__ __forceinline__ float e3_load_float(const float* p) { return *p; }
__device__ __forceinline__ float e3_load_float(const e3_bf16* p) { return e3_bf16_to_float(*p); }
__device__ __forceinline__ void e3_store_float(float* p, float v) { *p = v; }
__device__ __forceinline__ void e3_store_float(e3_bf16* p, float v) { *p = e3_float_to_bf16(v); }
__device__ __forceinline__ float e3_as_stored(float v, const float*) { return v; }
__device__ __forceinline__ float e3_as_stored(float v, const e3_bf16*) { return e3_round_bf16(v); }

// ---- reductions ----------------------------------------------------------------------------------------
// The xor butterfly leaves the full result in every lane, so no broadcast step is needed afterwards.
// Requires all 32 lanes of the warp to be active.

__device__ __forceinline__ float e3_warp_sum(float value)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        value += __shfl_xor_sync(E3_FULL_MASK, value, offset);
    return value;
}

__device__ __forceinline__ float e3_warp_max(float value)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        value = fmaxf(value, __shfl_xor_sync(E3_FULL_MASK, value, offset));
    return value;
}

// Block-wide sum returned to every thread. blockDim.x must be a multiple of 32 and at most 1024;
// scratch is a 32-float shared array (E3_SHARED) owned by the caller, so that one array serves every reduction
// of a kernel. Each thread adds the per-warp partials in
// the same order, so the result is identical in every thread and deterministic from run to run.
__device__ __forceinline__ float e3_block_sum(float value, float* scratch)
{
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    value = e3_warp_sum(value);
    __syncthreads(); // scratch may still be read by a previous reduction
    if (lane == 0)
        scratch[warp] = value;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < warps; ++i)
        total += scratch[i];
    return total;
}

__device__ __forceinline__ float e3_block_max(float value, float* scratch)
{
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    value = e3_warp_max(value);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = value;
    __syncthreads();
    float total = E3_NEG_INF;
    for (int i = 0; i < warps; ++i)
        total = fmaxf(total, scratch[i]);
    return total;
}

// ---- 16-byte vector access -----------------------------------------------------------------------------
// One 128-bit load/store per call when the address is 16-byte aligned (the caller guarantees it); alignas
// rather than __align__ so that g++ accepts the same declaration.

struct alignas(16) e3_vec16
{
    unsigned int word[4];
};

__device__ __forceinline__ e3_vec16 e3_load16(const void* address)
{
    return *reinterpret_cast<const e3_vec16*>(address);
}

__device__ __forceinline__ void e3_store16(void* address, e3_vec16 value)
{
    *reinterpret_cast<e3_vec16*>(address) = value;
}

// Four fp32 values from one 16-byte load.
__device__ __forceinline__ void e3_load_f32x4(const float* address, float out[4])
{
    const e3_vec16 v = e3_load16(address);
    for (int i = 0; i < 4; ++i)
        out[i] = __uint_as_float(v.word[i]);
}

// Eight bf16 values (as fp32) from one 16-byte load.
__device__ __forceinline__ void e3_load_bf16x8(const e3_bf16* address, float out[8])
{
    const e3_vec16 v = e3_load16(address);
    for (int i = 0; i < 4; ++i)
    {
        out[2 * i] = __uint_as_float(v.word[i] << 16);
        out[2 * i + 1] = __uint_as_float(v.word[i] & 0xffff0000u);
    }
}

// The bf16 vector paths: 8 elements a thread per 16-byte access, where the scalar paths move 2 bytes an access. An
// H100 keeps enough bytes in flight to approach its copy bandwidth only with wide accesses, so the memory-bound bf16
// kernels take this path whenever their pointers allow it (every allocation is 256-byte aligned; a pointer offset into
// a tensor may not be) and fall back to the scalar loop otherwise. Both compute each element with the same function,
// so only the order of a row reduction can differ between them.
__device__ __forceinline__ bool e3_is_aligned16(const void* address)
{
    return ((unsigned long long)address & 15ull) == 0ull;
}

// Element i (0..7) of eight packed bf16, widened; element 2j is the low half of word j (little-endian memory order).
__device__ __forceinline__ float e3_vec16_bf16_at(const e3_vec16& v, int i)
{
    const unsigned int w = v.word[i >> 1];
    return __uint_as_float((i & 1) ? (w & 0xffff0000u) : (w << 16));
}

// Sets element i (0..7) of eight packed bf16.
__device__ __forceinline__ void e3_vec16_set_bf16(e3_vec16& v, int i, e3_bf16 value)
{
    unsigned int& w = v.word[i >> 1];
    w = (i & 1) ? ((w & 0x0000ffffu) | ((unsigned int)value << 16)) : ((w & 0xffff0000u) | (unsigned int)value);
}

// Eight packed bf16 results f(a_j, b_j, c_j), j = 0..7, of eight packed inputs each (widened to fp32; f returns the
// bf16 to store).
template <typename F>
__device__ __forceinline__ e3_vec16 e3_vec16_map3(F f, const e3_vec16& a8, const e3_vec16& b8, const e3_vec16& c8)
{
    e3_vec16 y8 = {};
    for (int j = 0; j < 8; ++j)
        e3_vec16_set_bf16(y8, j, f(e3_vec16_bf16_at(a8, j), e3_vec16_bf16_at(b8, j), e3_vec16_bf16_at(c8, j)));
    return y8;
}

// y[i] = f(a[i], b[i], c[i]) over n bf16 elements (widened to fp32; f returns the stored bf16), grid-stride: 8
// elements a thread per iteration when every pointer is 16-byte aligned, then the element loop for what is left. c may
// be null, and f then gets 0 for it, so a kernel that only sometimes needs a third input does not read it. y may alias
// any input: each thread reads its elements before it writes them.
template <typename F>
__device__ __forceinline__ void e3_bf16_map3(const e3_bf16* a, const e3_bf16* b, const e3_bf16* c, e3_bf16* y, long long n, F f)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long scalar_from = 0;
    if (e3_is_aligned16(a) && e3_is_aligned16(b) && e3_is_aligned16(c) && e3_is_aligned16(y))
    {
        const long long vectors = n >> 3;
        for (long long v = first; v < vectors; v += stride)
        {
            const e3_vec16 a8 = e3_load16(a + 8 * v), b8 = e3_load16(b + 8 * v);
            e3_vec16 c8 = {};
            if (c != 0)
                c8 = e3_load16(c + 8 * v);
            e3_store16(y + 8 * v, e3_vec16_map3(f, a8, b8, c8));
        }
        scalar_from = vectors << 3;
    }
    for (long long i = scalar_from + first; i < n; i += stride)
        y[i] = f(e3_bf16_to_float(a[i]), e3_bf16_to_float(b[i]), c != 0 ? e3_bf16_to_float(c[i]) : 0.0f);
}

// h <- h + gate * ((a + m) - h), elementwise, as a torch decoder layer's gated end computes it: the sum a + m is
// rounded to the dtype first (torch adds two tensors), gate 1 stores that sum itself (h + 1 * (s - h) could differ in
// the last bit), and the blend is computed in fp32 and rounded once. residual.cu's e3_gated_residual_* and
// rmsnorm.cu's e3_gated_residual_rmsnorm_* both compute it here. The second argument only picks the dtype.
__device__ __forceinline__ float e3_gated_residual_value(float old, float a, float m, float gate, const float*)
{
    const float s = a + m;
    return gate == 1.0f ? s : old + gate * (s - old);
}

__device__ __forceinline__ float e3_gated_residual_value(float old, float a, float m, float gate, const e3_bf16*)
{
    const float s = e3_round_bf16(a + m);
    return gate == 1.0f ? s : e3_round_bf16(old + gate * (s - old));
}

// The bf16 gated residual as a map over (a, m, old) for e3_bf16_map3 and e3_vec16_map3: the bf16 to store.
struct e3_gated_residual_bf16_map
{
    float gate;
    __device__ __forceinline__ e3_bf16 operator()(float a, float m, float old) const
    {
        return e3_float_to_bf16(e3_gated_residual_value(old, a, m, gate, (const e3_bf16*)0));
    }
};

// Four bf16 values (as fp32) from one 8-byte load; the address must be 8-byte aligned.
struct alignas(8) e3_vec8
{
    unsigned int word[2];
};

__device__ __forceinline__ void e3_load_bf16x4(const e3_bf16* address, float out[4])
{
    const e3_vec8 v = *reinterpret_cast<const e3_vec8*>(address);
    for (int i = 0; i < 2; ++i)
    {
        out[2 * i] = __uint_as_float(v.word[i] << 16);
        out[2 * i + 1] = __uint_as_float(v.word[i] & 0xffff0000u);
    }
}

// ---- warp-level bf16 matrix multiply-accumulate --------------------------------------------------------------
// mma.sync m16n8k16 with bf16 inputs and fp32 accumulators. Fragments as the PTX ISA lays them out (g = lane / 4,
// t = lane % 4; the lower column of a pair is the low half of its 32-bit register):
//   A (16 x 16, row-major): a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   B (16 x 8):             b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   C (16 x 8, fp32):       c[0], c[1] = C[g][2t, 2t+1], c[2], c[3] = C[g+8][2t, 2t+1]
// On sm_80 and newer this is the instruction. Elsewhere (the emulator) the same result is computed from the same
// fragments: each lane gathers the rows of A and columns of B it needs from the lanes holding them, with shuffles, and
// adds the products in fp32 (in its own order; the instruction's order is unspecified too). native/tests/kernels/mma.cu
// checks this path against a plain matrix product with the fragments loaded as above.

__device__ __forceinline__ unsigned e3_pack_bf16x2(float low, float high)
{
    return (unsigned)e3_float_to_bf16(low) | ((unsigned)e3_float_to_bf16(high) << 16);
}

__device__ __forceinline__ float e3_bf16x2_low(unsigned pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float e3_bf16x2_high(unsigned pair) { return __uint_as_float(pair & 0xffff0000u); }

// Every lane of the warp must call it.
__device__ __forceinline__ void e3_mma_bf16_16x8x16(float* c, const unsigned* a, const unsigned* b)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    const int lane = threadIdx.x & 31;
    const int g = lane >> 2;
    const int t = lane & 3;
    for (int src = 0; src < 4; ++src)
    {
        // Lane 4g + src holds rows g and g+8 of A at columns 2src, 2src+1 (a[0], a[1]) and 2src+8, 2src+9 (a[2], a[3]);
        // lane 4n + src holds column n of B at rows 2src, 2src+1 (b[0]) and 2src+8, 2src+9 (b[1]). This lane's
        // outputs are rows g and g+8 by columns 2t and 2t+1, so it needs B's columns from lanes 8t + src and 8t + 4 + src.
        const unsigned a0 = __shfl_sync(E3_FULL_MASK, a[0], 4 * g + src);
        const unsigned a1 = __shfl_sync(E3_FULL_MASK, a[1], 4 * g + src);
        const unsigned a2 = __shfl_sync(E3_FULL_MASK, a[2], 4 * g + src);
        const unsigned a3 = __shfl_sync(E3_FULL_MASK, a[3], 4 * g + src);
        const unsigned b00 = __shfl_sync(E3_FULL_MASK, b[0], 8 * t + src);
        const unsigned b01 = __shfl_sync(E3_FULL_MASK, b[1], 8 * t + src);
        const unsigned b10 = __shfl_sync(E3_FULL_MASK, b[0], 8 * t + 4 + src);
        const unsigned b11 = __shfl_sync(E3_FULL_MASK, b[1], 8 * t + 4 + src);
        c[0] += e3_bf16x2_low(a0) * e3_bf16x2_low(b00) + e3_bf16x2_high(a0) * e3_bf16x2_high(b00)
            + e3_bf16x2_low(a2) * e3_bf16x2_low(b01) + e3_bf16x2_high(a2) * e3_bf16x2_high(b01);
        c[1] += e3_bf16x2_low(a0) * e3_bf16x2_low(b10) + e3_bf16x2_high(a0) * e3_bf16x2_high(b10)
            + e3_bf16x2_low(a2) * e3_bf16x2_low(b11) + e3_bf16x2_high(a2) * e3_bf16x2_high(b11);
        c[2] += e3_bf16x2_low(a1) * e3_bf16x2_low(b00) + e3_bf16x2_high(a1) * e3_bf16x2_high(b00)
            + e3_bf16x2_low(a3) * e3_bf16x2_low(b01) + e3_bf16x2_high(a3) * e3_bf16x2_high(b01);
        c[3] += e3_bf16x2_low(a1) * e3_bf16x2_low(b10) + e3_bf16x2_high(a1) * e3_bf16x2_high(b10)
            + e3_bf16x2_low(a3) * e3_bf16x2_low(b11) + e3_bf16x2_high(a3) * e3_bf16x2_high(b11);
    }
#endif
}

// ---- scalar math helpers -------------------------------------------------------------------------------

__device__ __forceinline__ float e3_sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

// sin and cos of an fp32 angle, accurate to a few ulp for |angle| up to ~1e6. sinf/cosf are not among the
// builtins the emulator provides, and RoPE angles (position * inverse frequency) reach tens of thousands of
// radians, so the reduction by pi/2 is done in double (only multiply/subtract) before fp32 polynomials on
// [-pi/4, pi/4].
__device__ __forceinline__ void e3_sincos(float angle, float* sin_out, float* cos_out)
{
    const double a = (double)angle;
    const double two_over_pi = 0.63661977236758134308;
    const double t = a * two_over_pi;
    const long long k = (long long)(t >= 0.0 ? t + 0.5 : t - 0.5);
    const double pio2_hi = 1.5707963267341256e+00; // pi/2 split in two (33 + 53 bits): k * hi is exact for |k| < 2^20
    const double pio2_lo = 6.0771005065061922e-11;
    const float r = (float)((a - (double)k * pio2_hi) - (double)k * pio2_lo);
    const float z = r * r;
    // Minimax polynomials for sin and cos on [-pi/4, pi/4] (fp32 coefficients).
    const float s = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
    const float c = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
    switch ((int)(k & 3))
    {
    case 0: *sin_out = s; *cos_out = c; break;
    case 1: *sin_out = c; *cos_out = -s; break;
    case 2: *sin_out = -s; *cos_out = -c; break;
    default: *sin_out = -c; *cos_out = s; break;
    }
}

// ---- counter-based random numbers ----------------------------------------------------------------------
// Philox-4x32-10 (Salmon et al., SC'11) with the Random123 constants; gumbel_topk.cu and sampling.cu draw from
// it, and the C# Philox4x32 / GumbelNoise compute the very same values.
__device__ __forceinline__ void e3_philox4x32_10(unsigned int ctr[4], unsigned int key0, unsigned int key1)
{
    for (int round = 0; round < 10; ++round)
    {
        if (round > 0)
        {
            key0 += 0x9E3779B9u;
            key1 += 0xBB67AE85u;
        }
        const unsigned long long p0 = (unsigned long long)0xD2511F53u * ctr[0];
        const unsigned long long p1 = (unsigned long long)0xCD9E8D57u * ctr[2];
        const unsigned int c1 = ctr[1], c3 = ctr[3];
        ctr[0] = (unsigned int)(p1 >> 32) ^ c1 ^ key0;
        ctr[1] = (unsigned int)p1;
        ctr[2] = (unsigned int)(p0 >> 32) ^ c3 ^ key1;
        ctr[3] = (unsigned int)p0;
    }
}

// The fp64 Gumbel noise of (seed, step, row, index): key = (seed low, seed high), counter = (index / 2, row,
// step low, step high); index takes output words 2*(index%2) (high) and 2*(index%2)+1, whose top 52 bits give
// u = (x + 0.5) * 2^-52 in (0, 1), and g = -log(-log u) in fp64. C#: E3.Backends.Numerics.GumbelNoise.Sample.
__device__ __forceinline__ double e3_gumbel_noise(long long seed, long long step, int row, int index)
{
    unsigned int ctr[4] = {(unsigned int)(index >> 1), (unsigned int)row, (unsigned int)step, (unsigned int)((unsigned long long)step >> 32)};
    e3_philox4x32_10(ctr, (unsigned int)seed, (unsigned int)((unsigned long long)seed >> 32));
    const int w = 2 * (index & 1);
    const unsigned long long bits = (((unsigned long long)ctr[w] << 32) | ctr[w + 1]) >> 12;
    const double u = ((double)bits + 0.5) * 2.220446049250313080847e-16; // 2^-52
    return -log(-log(u));
}
