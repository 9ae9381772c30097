// rope.cu: Qwen3-style per-head RMSNorm followed by rotary position embedding, in place.
//
// Math, for each row r (token) and head of x[tokens, heads * head_dim], with half = head_dim / 2:
//   optional norm:  v = w * (v * rsqrt(mean(v^2) + eps)) over the head_dim values (skipped when norm_weight is null)
//   position:       p = start_position + r % tokens_per_sequence
//   frequency:      inv_i = 1 / fp32(theta^(fp32(2i) / head_dim)) for i < half;  angle_i = p * inv_i  (fp32, as transformers)
//   rotate_half:    out_i = v_i cos_i - v_{i+half} sin_i;   out_{i+half} = v_{i+half} cos_i + v_i sin_i
//   bf16 rows round where the Hugging Face modules do: after the norm, after w *, cos/sin themselves, each
//   product, and the sum.
// Memory traffic per call: reads and writes x once: 2*tokens*heads*head_dim*E bytes (+ head_dim*E for w).
// e3_qk_norm_rope_* do q and k (each with its own norm weight) in one launch: the same values as two launches.
// Backward (fp32, e3_head_norm_rope_backward_f32, at the end of the file): rotate dy by -angle, then the per-head RMSNorm
//   backward; the norm weight's gradient terms go to a [tokens*heads, head_dim] buffer for a column sum (no atomics).
// Launch shape: block = (128) = 4 warps, one warp per (row, head); grid = (ceil(tokens * heads / 4)) for the backward
//   kernels, capped at E3_ROPE_MAX_BLOCKS for the forward ones, whose warps loop over items (grid-stride).
//   head_dim must be even; each lane owns pairs (i, i + half) for i = lane, lane + 32, ... so the in-place
//   update has no cross-lane hazards; the norm needs only a warp reduction.
#include "common.cuh"

#define E3_ROPE_WARPS_PER_BLOCK 4

// e^x in fp64 from multiplies and adds only (exp(double) is not among the emulator's builtins): x = k ln2 + r with
// |r| <= ln2/2, a degree-13 Taylor polynomial for e^r (truncation below 1e-17 relative), and 2^k from its bits.
// Accurate to a few fp64 ulp for |x| < 700.
__device__ __forceinline__ double e3_rope_exp_f64(double x)
{
    const double ln2_hi = 6.93147180369123816490e-01; // ln 2 split so that k * ln2_hi is exact for |k| < 2^20
    const double ln2_lo = 1.90821492927058770002e-10;
    const double t = x * 1.44269504088896338700;
    const long long k = (long long)(t >= 0.0 ? t + 0.5 : t - 0.5);
    const double r = (x - (double)k * ln2_hi) - (double)k * ln2_lo;
    double p = 1.0;
    for (int n = 13; n >= 1; --n) // Horner form of sum r^n / n!: 1 + r(1 + r/2(1 + r/3(...)))
        p = 1.0 + p * r / (double)n;
    union { unsigned long long word; double value; } scale;
    scale.word = (unsigned long long)(k + 1023) << 52;
    return p * scale.value;
}

// inv_freq_i exactly as transformers builds it in fp32: exponent = fp32(2i) / fp32(head_dim) (one fp32 division),
// theta^exponent correctly rounded to fp32 (evaluated in fp64, then rounded once), then 1 / that in fp32. The
// former expf(-e * logf(theta)) was up to ~1e-6 off in relative terms, ~3e-4 rad at position 4000; with the
// angle then formed as one fp32 product p * inv_freq_i, CPU backend, emulator and torch agree bit for bit on it.
__device__ __forceinline__ float e3_rope_inverse_frequency(int i, int head_dim, float theta)
{
    const float exponent = (float)(2 * i) / (float)head_dim;
    const double power = e3_rope_exp_f64((double)exponent * log((double)theta));
    return 1.0f / (float)power;
}

// The forward kernels loop a warp over (row, head) items and keep the inverse frequencies of the lane's first pairs
// (i = lane + 32c, c < E3_ROPE_CACHED_PAIRS, all of them up to head_dim 256) in registers: each costs an fp64 exp and
// log, which per element would rival the kernel's memory traffic. Pairs beyond that compute theirs as they go.
#define E3_ROPE_CACHED_PAIRS 4
#ifdef __CUDACC_RTC__
#define E3_ROPE_UNROLL _Pragma("unroll")
#else
#define E3_ROPE_UNROLL
#endif

// Most items a forward launch gives each warp more than one of: 2048 blocks of 4 warps fill any GPU several times over.
#define E3_ROPE_MAX_BLOCKS 2048

__device__ __forceinline__ void e3_rope_lane_frequencies(int lane, int head_dim, float theta, float* freq)
{
    E3_ROPE_UNROLL
    for (int c = 0; c < E3_ROPE_CACHED_PAIRS; ++c)
    {
        const int i = lane + 32 * c;
        freq[c] = i < (head_dim >> 1) ? e3_rope_inverse_frequency(i, head_dim, theta) : 0.0f;
    }
}

// Calls pair(i, inverse frequency of i) for each of this lane's pairs.
template <typename F>
__device__ __forceinline__ void e3_rope_for_lane_pairs(int lane, int head_dim, float theta, const float* freq, F pair)
{
    const int half = head_dim >> 1;
    E3_ROPE_UNROLL
    for (int c = 0; c < E3_ROPE_CACHED_PAIRS; ++c)
        if (lane + 32 * c < half)
            pair(lane + 32 * c, freq[c]);
    for (int i = lane + 32 * E3_ROPE_CACHED_PAIRS; i < half; i += 32)
        pair(i, e3_rope_inverse_frequency(i, head_dim, theta));
}

// One (row, head) item of the forward: v holds its head_dim values, row is its row of x. The whole warp takes it, so
// the norm's warp reduction always sees 32 lanes. One templated body for both dtypes (common.cuh's e3_as_stored: bf16
// rounds where the Hugging Face modules do, fp32 leaves each value as it is, so the fp32 kernel computes
// w * (a * inv) and a * c - b * s exactly).
template <typename T>
__device__ __forceinline__ void e3_head_norm_rope_item(T* v, const T* norm_weight, int row, int lane, int head_dim, float eps, float theta,
    const float* freq, int tokens_per_sequence, int start_position)
{
    const int half = head_dim >> 1;
    float inv = 1.0f;
    if (norm_weight != 0)
    {
        float sum = 0.0f;
        for (int i = lane; i < head_dim; i += 32)
        {
            const float f = e3_load_float(v + i);
            sum += f * f;
        }
        inv = rsqrtf(e3_warp_sum(sum) / (float)head_dim + eps);
    }
    const float position = (float)(start_position + row % tokens_per_sequence);
    e3_rope_for_lane_pairs(lane, head_dim, theta, freq, [&](int i, float frequency)
    {
        float a = e3_load_float(v + i);
        float b = e3_load_float(v + i + half);
        if (norm_weight != 0)
        {
            a = e3_as_stored(e3_load_float(norm_weight + i) * e3_as_stored(a * inv, v), v);
            b = e3_as_stored(e3_load_float(norm_weight + i + half) * e3_as_stored(b * inv, v), v);
        }
        float s, c;
        e3_sincos(position * frequency, &s, &c);
        s = e3_as_stored(s, v);
        c = e3_as_stored(c, v);
        e3_store_float(v + i, e3_as_stored(a * c, v) + e3_as_stored(-b * s, v));
        e3_store_float(v + i + half, e3_as_stored(b * c, v) + e3_as_stored(a * s, v));
    });
}

// Whole warps loop over items: item < q_items is q's (row, head) item, the rest are k's. A call for one tensor passes
// k_heads = 0.
template <typename T>
__device__ __forceinline__ void e3_qk_norm_rope(T* q, const T* q_norm, int q_heads, T* k, const T* k_norm, int k_heads, int tokens, int head_dim,
    float eps, float theta, int tokens_per_sequence, int start_position)
{
    const int lane = threadIdx.x & 31;
    const long long q_items = (long long)tokens * q_heads, items = q_items + (long long)tokens * k_heads;
    const long long warps = (long long)gridDim.x * E3_ROPE_WARPS_PER_BLOCK;
    float freq[E3_ROPE_CACHED_PAIRS];
    e3_rope_lane_frequencies(lane, head_dim, theta, freq);
    for (long long item = (long long)blockIdx.x * E3_ROPE_WARPS_PER_BLOCK + (threadIdx.x >> 5); item < items; item += warps)
    {
        if (item < q_items)
            e3_head_norm_rope_item(q + item * head_dim, q_norm, (int)(item / q_heads), lane, head_dim, eps, theta, freq, tokens_per_sequence, start_position);
        else
            e3_head_norm_rope_item(k + (item - q_items) * head_dim, k_norm, (int)((item - q_items) / k_heads), lane, head_dim, eps, theta, freq,
                tokens_per_sequence, start_position);
    }
}

extern "C" __global__ void e3_head_norm_rope_f32(float* x, const float* norm_weight, int tokens, int heads, int head_dim, float eps, float theta, int tokens_per_sequence, int start_position)
{
    e3_qk_norm_rope(x, norm_weight, heads, (float*)0, (const float*)0, 0, tokens, head_dim, eps, theta, tokens_per_sequence, start_position);
}

extern "C" __global__ void e3_head_norm_rope_bf16(e3_bf16* x, const e3_bf16* norm_weight, int tokens, int heads, int head_dim, float eps, float theta, int tokens_per_sequence, int start_position)
{
    e3_qk_norm_rope(x, norm_weight, heads, (e3_bf16*)0, (const e3_bf16*)0, 0, tokens, head_dim, eps, theta, tokens_per_sequence, start_position);
}

// q and k of one attention layer in one launch: q [tokens, q_heads * head_dim] with its norm, then k [tokens, k_heads *
// head_dim] with its own; the same values as two e3_head_norm_rope_* launches. The parameters after k_heads are
// e3_head_norm_rope_*'s, q's heads in the place of its heads.
extern "C" __global__ void e3_qk_norm_rope_f32(float* q, const float* q_norm, float* k, const float* k_norm, int k_heads, int tokens, int q_heads, int head_dim,
    float eps, float theta, int tokens_per_sequence, int start_position)
{
    e3_qk_norm_rope(q, q_norm, q_heads, k, k_norm, k_heads, tokens, head_dim, eps, theta, tokens_per_sequence, start_position);
}

extern "C" __global__ void e3_qk_norm_rope_bf16(e3_bf16* q, const e3_bf16* q_norm, e3_bf16* k, const e3_bf16* k_norm, int k_heads, int tokens, int q_heads, int head_dim,
    float eps, float theta, int tokens_per_sequence, int start_position)
{
    e3_qk_norm_rope(q, q_norm, q_heads, k, k_norm, k_heads, tokens, head_dim, eps, theta, tokens_per_sequence, start_position);
}

// Gradient of the rotation alone (no norm): the transpose of a rotation by angle is the rotation by -angle.
// Same launch shape as the forward kernels; dx may alias dy.
extern "C" __global__ void e3_rope_backward_f32(float* dx, const float* dy, int tokens, int heads, int head_dim, float theta, int tokens_per_sequence, int start_position)
{
    const int item = blockIdx.x * E3_ROPE_WARPS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (item >= tokens * heads)
        return;
    const int row = item / heads;
    const int half = head_dim >> 1;
    const float* g = dy + (long long)item * head_dim;
    float* out = dx + (long long)item * head_dim;
    const float position = (float)(start_position + row % tokens_per_sequence);
    for (int i = lane; i < half; i += 32)
    {
        const float a = g[i];
        const float b = g[i + half];
        float s, c;
        e3_sincos(position * e3_rope_inverse_frequency(i, head_dim, theta), &s, &c);
        out[i] = a * c + b * s;
        out[i + half] = b * c - a * s;
    }
}

// Backward of e3_head_norm_rope_f32, in place on grad (fp32): grad holds dL/d(output) on entry and dL/d(input) on
// return; x is the input as it was before the forward. Rotation by -angle (the same angles as the forward), then,
// with a norm weight, the RMSNorm backward over the head: dx = r*w*dn - x*r^3/head_dim*sum(w*dn*x). When dy_xhat is not
// null each (row, head) writes its weight-gradient terms dn*x*r there ([tokens*heads, head_dim]) for a column sum in
// item order (deterministic, no atomics). Same launch shape as the forward; a lane owns pairs (i, i + half) in both
// phases, so the in-place update needs no cross-lane synchronisation.
extern "C" __global__ void e3_head_norm_rope_backward_f32(const float* x, const float* norm_weight, float* grad, float* dy_xhat, int tokens, int heads, int head_dim, float eps, float theta, int tokens_per_sequence, int start_position)
{
    const int item = blockIdx.x * E3_ROPE_WARPS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (item >= tokens * heads)
        return; // whole warps leave together
    const int row = item / heads;
    const int half = head_dim >> 1;
    const float* xv = x + (long long)item * head_dim;
    float* g = grad + (long long)item * head_dim;
    const float position = (float)(start_position + row % tokens_per_sequence);
    float dot = 0.0f;
    for (int i = lane; i < half; i += 32)
    {
        const float a = g[i];
        const float b = g[i + half];
        float s, c;
        e3_sincos(position * e3_rope_inverse_frequency(i, head_dim, theta), &s, &c);
        const float da = a * c + b * s;
        const float db = b * c - a * s;
        g[i] = da;
        g[i + half] = db;
        if (norm_weight != 0)
            dot += norm_weight[i] * da * xv[i] + norm_weight[i + half] * db * xv[i + half];
    }
    if (norm_weight == 0)
        return;
    float squares = 0.0f;
    for (int i = lane; i < head_dim; i += 32)
        squares += xv[i] * xv[i];
    const float inv = rsqrtf(e3_warp_sum(squares) / (float)head_dim + eps);
    const float coefficient = inv * inv * inv * e3_warp_sum(dot) / (float)head_dim;
    for (int i = lane; i < half; i += 32)
    {
        for (int at = i; at < head_dim; at += half)
        {
            const float dn = g[at];
            if (dy_xhat != 0)
                dy_xhat[(long long)item * head_dim + at] = dn * xv[at] * inv;
            g[at] = inv * norm_weight[at] * dn - coefficient * xv[at];
        }
    }
}
