// gumbel_topk.cu: Gumbel-TopK layer-mask sampling with a straight-through estimator.
//
// Math, per sample r of S and layer i of L (k layers kept, temperature tau):
//   noise    u = (x + 0.5) * 2^-52 with x the top 52 bits of the 64-bit Philox-4x32-10 draw for (seed, step, r, i)
//            (u lies in [2^-53, 1 - 2^-53]: never 0 or 1), g = -log(-log u) in fp64.
//   hard     m_i = 1 if rank_i < k, rank_i = #{j : d_j > d_i or (d_j == d_i and j < i)} on the fp64 scores
//            d = alpha + g (ties go to the lower layer index).
//   soft     on the fp32 scores s = alpha + (float)g:
//            softtopk (relaxation 0): s' = s; k times: p = softmax(s'/tau); y += p; s' += log(max(1 - p, 1e-20)),
//            with 1 - p of the leading layer computed as (sum of the other exps) / (sum of all), see below.
//            sigmoid  (relaxation 1): y = sigmoid((s - t)/tau), t = (s_a + s_b)/2 with a, b the layers of rank k-1
//            and k (y = 1 when k = L). t is differentiated through, like autograd through a top-k gather.
//   backward dalpha += vector-Jacobian product of y with dL/dm (straight-through: dL/dy := dL/dm), summed over
//            samples by atomicAdd (so the fp32 summation order across samples is not deterministic).
//   Philox layout: key = (seed low 32 bits, seed high 32 bits); counter = (i / 2, r, step low, step high);
//   layer i takes output words 2*(i%2) and 2*(i%2)+1, high word first.
//   The generator and the noise (e3_philox4x32_10, e3_gumbel_noise) live in common.cuh, shared with sampling.cu.
// Memory traffic per call: forward reads alpha (L floats, from L2), writes hard + soft (2*S*L floats) and, for
//   softtopk, the step values p and 1 - p (2*S*k*L floats) the backward reads back; backward reads dL/dm (S*L)
//   and those.
// Launch shape: grid = (S), block = (32 * ceil(L / 32)), one thread per layer, L <= 256; no dynamic shared memory.
//   grad_alpha must be zeroed before a backward launch. work is an [S, k, 2, L] fp32 workspace (unused by sigmoid).
#include "common.cuh"

#define E3_GUMBEL_MAX_LAYERS 256
#define E3_GUMBEL_SOFTTOPK 0
#define E3_GUMBEL_SIGMOID 1
// Floor of 1 - p before the log: keeps s' finite when a softmax step saturates (p rounds to 1), and then the
// log's gradient is 0, as for torch.clamp.
#define E3_GUMBEL_ONE_MINUS_P_FLOOR 1e-20f

// Noise, fp32 score and stable descending rank of this thread's layer. score64 is the kernel's 256-double
// __shared__ array. Inactive threads (i >= layers) get rank = layers and score 0.
__device__ __forceinline__ int e3_gumbel_topk_score_and_rank(const float* logits, int layers, long long seed, long long step, int sample,
    double* score64, float* score)
{
    const int i = threadIdx.x;
    double d = 0.0;
    *score = 0.0f;
    if (i < layers)
    {
        const float a = logits[i];
        const double g = e3_gumbel_noise(seed, step, sample, i);
        d = (double)a + g;
        score64[i] = d;
        *score = a + (float)g;
    }
    __syncthreads();
    int rank = layers;
    if (i < layers)
    {
        rank = 0;
        for (int j = 0; j < layers; ++j)
        {
            const double o = score64[j];
            rank += (o > d || (o == d && j < i)) ? 1 : 0;
        }
    }
    return rank;
}

// Successive-softmax relaxation; writes each step's p and q = 1 - p to work_row ([k, 2, L]) and returns this
// layer's soft value. q is evaluated without cancellation: the leading layer (largest z, lowest index on ties)
// has e = exp(0) = 1 exactly, so S = rest + 1 with rest the sum over the other layers, and its q = rest / S
// rather than 1 - p (which rounds to 0 in fp32 once p > 1 - 2^-24, i.e. as soon as tau is small); every other
// layer has p <= 1/2 and q = 1 - p is exact to an ulp.
__device__ __forceinline__ float e3_gumbel_topk_softtopk_forward(float s, int layers, int keep, float tau, float* work_row, float* scratch)
{
    const int i = threadIdx.x;
    const bool active = i < layers;
    float shifted = s, soft = 0.0f;
    for (int t = 0; t < keep; ++t)
    {
        const float z = active ? shifted / tau : E3_NEG_INF;
        const float m = e3_block_max(z, scratch);
        const int lead = (int)-e3_block_max(active && z == m ? -(float)i : E3_NEG_INF, scratch);
        const float e = active ? expf(z - m) : 0.0f;
        const float rest = e3_block_sum(i == lead ? 0.0f : e, scratch);
        const float total = rest + 1.0f;
        const float p = e / total;
        const float q = i == lead ? rest / total : 1.0f - p;
        if (active)
        {
            work_row[(long long)(2 * t) * layers + i] = p;
            work_row[(long long)(2 * t + 1) * layers + i] = q;
        }
        soft += p;
        shifted += logf(fmaxf(q, E3_GUMBEL_ONE_MINUS_P_FLOOR));
    }
    return soft;
}

// Reverse mode through the k softmax steps: returns d(sum_j grad_j * y_j)/d s_i for this thread's layer.
// The softmax VJP p_i * (gp_i - sum_j p_j gp_j) cancels catastrophically for the leading layer, whose gp carries
// gs / q with q tiny; since 1 - p_lead = q_lead, it is evaluated as p_lead * (q_lead * gp_lead - rest) with
// rest = sum over the other layers of p_j gp_j, and q_lead * gp_lead = q_lead * grad - gs (no division). Any layer
// may play the leader in exact arithmetic; the largest p (lowest index on ties) is the one that needs it.
__device__ __forceinline__ float e3_gumbel_topk_softtopk_backward(float grad, int layers, int keep, float tau, const float* work_row, float* scratch)
{
    const int i = threadIdx.x;
    const bool active = i < layers;
    float gs = 0.0f; // gradient with respect to s' of the step being undone
    for (int t = keep - 1; t >= 0; --t)
    {
        const float p = active ? work_row[(long long)(2 * t) * layers + i] : 0.0f;
        const float q = active ? work_row[(long long)(2 * t + 1) * layers + i] : 1.0f;
        const float top = e3_block_max(p, scratch);
        const int lead = (int)-e3_block_max(active && p == top ? -(float)i : E3_NEG_INF, scratch);
        const bool through_log = q >= E3_GUMBEL_ONE_MINUS_P_FLOOR;
        const float gp = grad - (through_log ? gs / q : 0.0f);
        const float rest = e3_block_sum(active && i != lead ? gp * p : 0.0f, scratch);
        const float lead_term = e3_block_sum(i == lead ? gp * p : 0.0f, scratch); // one non-zero term: exact
        const float gz = i == lead ? p * (q * grad - (through_log ? gs : 0.0f) - rest) : p * (gp - lead_term - rest);
        gs += gz / tau;
    }
    return gs;
}

// sigmoid((s - t)/tau) with t halfway between the scores of rank k-1 and k. bounds is a 2-float __shared__ array.
__device__ __forceinline__ float e3_gumbel_topk_sigmoid_threshold(float s, int rank, int layers, int keep, float* bounds)
{
    if (rank == keep - 1)
        bounds[0] = s;
    if (rank == keep)
        bounds[1] = s;
    __syncthreads();
    return keep < layers ? 0.5f * (bounds[0] + bounds[1]) : E3_NEG_INF;
}

// Gradient of sum_j grad_j * sigmoid((s_j - t)/tau) with respect to s_i, t included (t from e3_gumbel_topk_sigmoid_threshold).
__device__ __forceinline__ float e3_gumbel_topk_sigmoid_backward(float s, float t, float grad, int rank, int layers, int keep, float tau, float* scratch)
{
    if (keep >= layers)
        return 0.0f;
    const float y = e3_sigmoid((s - t) / tau);
    const float gs = (int)threadIdx.x < layers ? grad * y * (1.0f - y) / tau : 0.0f;
    const float through_t = -0.5f * e3_block_sum(gs, scratch);
    return gs + ((rank == keep - 1 || rank == keep) ? through_t : 0.0f);
}

// The whole computation for the block's sample. Forward outputs (hard, soft) are skipped when hard is null and
// the backward (grad_mask -> grad_logits) when grad_logits is null; both tests are uniform across the block, so
// every barrier is still reached by all threads. score64, scratch and bounds are the kernel's __shared__ arrays.
__device__ __forceinline__ void e3_gumbel_topk_sample(const float* logits, const float* grad_mask, float* hard, float* soft, float* work,
    float* grad_logits, int layers, int keep, long long seed, long long step, float tau, int relaxation,
    double* score64, float* scratch, float* bounds)
{
    const int sample = blockIdx.x;
    const int i = threadIdx.x;
    const bool forward = hard != 0, backward = grad_logits != 0;
    const float grad = backward && i < layers ? grad_mask[(long long)sample * layers + i] : 0.0f;
    float s = 0.0f, y = 0.0f, g = 0.0f;
    int rank = layers;
    // The soft-top-k backward needs only the stored p and 1 - p; everything else needs the scores.
    if (forward || relaxation == E3_GUMBEL_SIGMOID)
        rank = e3_gumbel_topk_score_and_rank(logits, layers, seed, step, sample, score64, &s);
    if (relaxation == E3_GUMBEL_SIGMOID)
    {
        const float t = e3_gumbel_topk_sigmoid_threshold(s, rank, layers, keep, bounds);
        y = e3_sigmoid((s - t) / tau);
        if (backward)
            g = e3_gumbel_topk_sigmoid_backward(s, t, grad, rank, layers, keep, tau, scratch);
    }
    else
    {
        float* row = work + (long long)sample * 2 * keep * layers;
        if (forward)
            y = e3_gumbel_topk_softtopk_forward(s, layers, keep, tau, row, scratch);
        // No barrier between the two: each thread reads back only the values it wrote itself.
        if (backward)
            g = e3_gumbel_topk_softtopk_backward(grad, layers, keep, tau, row, scratch);
    }
    if (i < layers)
    {
        if (forward)
        {
            hard[(long long)sample * layers + i] = rank < keep ? 1.0f : 0.0f;
            soft[(long long)sample * layers + i] = y;
        }
        if (backward)
            atomicAdd(&grad_logits[i], g);
    }
}

extern "C" __global__ void e3_gumbel_topk_forward(const float* logits, float* hard, float* soft, float* work, int layers, int keep, int samples, long long seed, long long step, float tau, int relaxation)
{
    E3_SHARED(double, score64, [E3_GUMBEL_MAX_LAYERS]);
    E3_SHARED(float, scratch, [32]);
    E3_SHARED(float, bounds, [2]);
    if (blockIdx.x < (unsigned int)samples)
        e3_gumbel_topk_sample(logits, 0, hard, soft, work, 0, layers, keep, seed, step, tau, relaxation, score64, scratch, bounds);
}

extern "C" __global__ void e3_gumbel_topk_backward(const float* logits, const float* grad_mask, const float* work, float* grad_logits, int layers, int keep, int samples, long long seed, long long step, float tau, int relaxation)
{
    E3_SHARED(double, score64, [E3_GUMBEL_MAX_LAYERS]);
    E3_SHARED(float, scratch, [32]);
    E3_SHARED(float, bounds, [2]);
    // The backward only reads work; the shared helper takes it writable for the forward's sake.
    if (blockIdx.x < (unsigned int)samples)
        e3_gumbel_topk_sample(logits, grad_mask, 0, 0, (float*)work, grad_logits, layers, keep, seed, step, tau, relaxation, score64, scratch, bounds);
}

// Forward and backward in one launch, for when dL/dm is known up front (work is still the [S, k, 2, L] workspace).
extern "C" __global__ void e3_gumbel_topk_forward_backward(const float* logits, const float* grad_mask, float* hard, float* soft, float* work, float* grad_logits, int layers, int keep, int samples, long long seed, long long step, float tau, int relaxation)
{
    E3_SHARED(double, score64, [E3_GUMBEL_MAX_LAYERS]);
    E3_SHARED(float, scratch, [32]);
    E3_SHARED(float, bounds, [2]);
    if (blockIdx.x < (unsigned int)samples)
        e3_gumbel_topk_sample(logits, grad_mask, hard, soft, work, grad_logits, layers, keep, seed, step, tau, relaxation, score64, scratch, bounds);
}

// The raw fp64 noise as two 32-bit words per (sample, layer) (high word first): lets the hosts compare the
// device's noise bit for bit. grid = (S), block = (32 * ceil(L / 32)).
extern "C" __global__ void e3_gumbel_noise_bits(unsigned int* bits, int layers, int samples, long long seed, long long step)
{
    const int sample = blockIdx.x;
    const int i = threadIdx.x;
    if (sample >= samples || i >= layers)
        return;
    // A union reads the bits without toolkit intrinsics (__double_as_longlong is not in the emulator's list);
    // NVRTC and g++ both define this punning.
    union { double value; unsigned long long word; } noise;
    noise.value = e3_gumbel_noise(seed, step, sample, i);
    const unsigned long long word = noise.word;
    bits[2 * ((long long)sample * layers + i)] = (unsigned int)(word >> 32);
    bits[2 * ((long long)sample * layers + i) + 1] = (unsigned int)word;
}
