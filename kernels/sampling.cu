// sampling.cu: choosing the next token from rows of logits, greedily (argmax) or by sampling.
//
// Order: values are compared as (value descending, index ascending), and NaN counts as larger than every number
//   (as in torch.argmax), so ties go to the lowest index and a row holding NaN yields its first NaN.
// argmax: out[r] = the first index of the largest x[r, 0..vocab).
// sample: z_i = x_i * inv_temperature (one fp32 product). Candidates:
//   - top_k == 0 and top_p >= 1: the whole row;
//   - otherwise the K best z in the order above, K = min(top_k, vocab), or min(64, vocab) when top_k == 0 (so
//     top-p alone considers at most the 64 most likely tokens); then, when top_p < 1, the shortest prefix of
//     them (in order) whose weights w_j = expf(z_j - z_0), added in order in fp32, reach top_p * (sum of all K w_j).
//   token = the candidate with the largest (double)z_i + g_i, g_i = e3_gumbel_noise(seed, step, r, i) (common.cuh):
//   the Gumbel-max trick, which draws exactly softmax(z) restricted to the candidates. Every step is a comparison,
//   one fp32 product or a sequential fp32 sum, so a host that evaluates the same expressions (glibc's expf and log,
//   as the emulator uses) picks the same token; on a GPU expf/log may differ in the last bit.
// top-k log-probabilities (the teacher cache): for each row the K best logits in the order above, their indices, and
//   log p_i = min(0, z_i - lse) with lse = max + log(sum_j expf(z_j - max)), the sum taken per thread in double and
//   combined by a fixed tree in double (deterministic). A row holding NaN or an infinity writes index -1 in its
//   first slot and nothing else, for the host to report.
// Memory traffic per call: argmax and full-row sampling read rows*vocab*E bytes once and write 4*rows bytes;
//   top-k sampling reads each row K+1 times (K selection passes, from L2 on a GPU when vocab*E fits); top-k
//   log-probabilities read it K+2 times (max, sum, K selections) and write 8*rows*K bytes.
// Launch shape: grid = (rows), block = (256) (E3_SAMPLING_THREADS; the tree reduction needs that power of two);
//   no dynamic shared memory.
#include "common.cuh"

#define E3_SAMPLING_THREADS 256
#define E3_SAMPLING_MAX_K 64

// A block's shared memory: the tree reduction's (value, index) slots and the top-k candidates (thread 0's list).
struct e3_sampling_shared
{
    double values[E3_SAMPLING_THREADS];
    int indices[E3_SAMPLING_THREADS];
    float cand_z[E3_SAMPLING_MAX_K];
    int cand_i[E3_SAMPLING_MAX_K];
    float scratch[32]; // e3_block_sum / e3_block_max
};

__device__ __forceinline__ float e3_sampling_load(const float* p) { return *p; }
__device__ __forceinline__ float e3_sampling_load(const e3_bf16* p) { return e3_bf16_to_float(*p); }

// Whether (a, ia) comes before (b, ib) in the order above.
__device__ __forceinline__ bool e3_sampling_before(double a, int ia, double b, int ib)
{
    const bool nan_a = a != a, nan_b = b != b;
    if (nan_a || nan_b)
        return nan_a && (!nan_b || ia < ib);
    return a > b || (a == b && ia < ib);
}

// Block-wide first element in the order above; every thread gets the winner's index (and value).
// Index 0x7fffffff marks a thread that holds nothing. value/index are 256-entry __shared__ arrays of the kernel.
__device__ __forceinline__ int e3_sampling_block_best(double v, int i, double* values, int* indices, double* best)
{
    const int t = threadIdx.x;
    __syncthreads(); // the arrays may still be read by the previous reduction
    values[t] = v;
    indices[t] = i;
    __syncthreads();
    for (int stride = E3_SAMPLING_THREADS / 2; stride > 0; stride >>= 1)
    {
        if (t < stride && e3_sampling_before(values[t + stride], indices[t + stride], values[t], indices[t]))
        {
            values[t] = values[t + stride];
            indices[t] = indices[t + stride];
        }
        __syncthreads();
    }
    *best = values[0];
    return indices[0];
}

template <typename T>
__device__ __forceinline__ void e3_argmax_row(const T* x, int* out, int vocab, double* values, int* indices)
{
    double v = E3_NEG_INF;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += E3_SAMPLING_THREADS)
    {
        const double c = (double)e3_sampling_load(x + i);
        if (e3_sampling_before(c, i, v, index))
        {
            v = c;
            index = i;
        }
    }
    double best;
    const int winner = e3_sampling_block_best(v, index, values, indices, &best);
    if (threadIdx.x == 0)
        *out = winner;
}

extern "C" __global__ void e3_argmax_f32(const float* x, int* out, int rows, int vocab, int ld)
{
    E3_SHARED(e3_sampling_shared, shared, );
    if ((int)blockIdx.x < rows)
        e3_argmax_row(x + (long long)blockIdx.x * ld, out + blockIdx.x, vocab, shared.values, shared.indices);
}

extern "C" __global__ void e3_argmax_bf16(const e3_bf16* x, int* out, int rows, int vocab, int ld)
{
    E3_SHARED(e3_sampling_shared, shared, );
    if ((int)blockIdx.x < rows)
        e3_argmax_row(x + (long long)blockIdx.x * ld, out + blockIdx.x, vocab, shared.values, shared.indices);
}

// Gumbel-max over the whole row.
template <typename T>
__device__ __forceinline__ int e3_sample_full_row(const T* x, int row, int vocab, float inv_temperature, long long seed, long long step,
    double* values, int* indices)
{
    double v = E3_NEG_INF;
    int index = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += E3_SAMPLING_THREADS)
    {
        const float z = e3_sampling_load(x + i) * inv_temperature;
        const double c = (double)z + e3_gumbel_noise(seed, step, row, i);
        if (e3_sampling_before(c, i, v, index))
        {
            v = c;
            index = i;
        }
    }
    double best;
    return e3_sampling_block_best(v, index, values, indices, &best);
}

// The K best scaled logits in order: pass j picks the best element that comes after pick j-1, so nothing needs
// marking. Thread 0 receives them in cand_z/cand_i.
template <typename T>
__device__ __forceinline__ void e3_sample_select_top_k(const T* x, int vocab, int k, float inv_temperature,
    double* values, int* indices, float* cand_z, int* cand_i)
{
    double previous = E3_NAN; // before everything: every element comes after (NaN, -1)
    int previous_index = -1;
    for (int j = 0; j < k; ++j)
    {
        double v = E3_NEG_INF;
        int index = 0x7fffffff;
        for (int i = threadIdx.x; i < vocab; i += E3_SAMPLING_THREADS)
        {
            const double c = (double)(e3_sampling_load(x + i) * inv_temperature);
            if (e3_sampling_before(previous, previous_index, c, i) && e3_sampling_before(c, i, v, index))
            {
                v = c;
                index = i;
            }
        }
        previous_index = e3_sampling_block_best(v, index, values, indices, &previous);
        if (threadIdx.x == 0)
        {
            cand_z[j] = (float)previous;
            cand_i[j] = previous_index;
        }
    }
}

// Thread 0 only: how many leading candidates the top-p rule keeps (at least one).
__device__ __forceinline__ int e3_sample_top_p_count(const float* cand_z, int k, float top_p)
{
    if (!(top_p < 1.0f))
        return k;
    float total = 0.0f;
    for (int j = 0; j < k; ++j)
        total += expf(cand_z[j] - cand_z[0]);
    const float target = top_p * total;
    float sum = 0.0f;
    for (int j = 0; j < k; ++j)
    {
        sum += expf(cand_z[j] - cand_z[0]);
        if (sum >= target)
            return j + 1;
    }
    return k;
}

template <typename T>
__device__ __forceinline__ void e3_sample_row(const T* x, int* out, int row, int vocab, float inv_temperature, int top_k, float top_p,
    long long seed, long long step, e3_sampling_shared& shared)
{
    double* values = shared.values;
    int* indices = shared.indices;
    float* cand_z = shared.cand_z;
    int* cand_i = shared.cand_i;
    if (top_k == 0 && !(top_p < 1.0f))
    {
        const int token = e3_sample_full_row(x, row, vocab, inv_temperature, seed, step, values, indices);
        if (threadIdx.x == 0)
            *out = token;
        return;
    }
    const int k = min(top_k == 0 ? E3_SAMPLING_MAX_K : top_k, vocab);
    e3_sample_select_top_k(x, vocab, k, inv_temperature, values, indices, cand_z, cand_i);
    if (threadIdx.x != 0)
        return;
    const int kept = e3_sample_top_p_count(cand_z, k, top_p);
    double v = E3_NEG_INF;
    int index = 0x7fffffff;
    for (int j = 0; j < kept; ++j)
    {
        const double c = (double)cand_z[j] + e3_gumbel_noise(seed, step, row, cand_i[j]);
        if (e3_sampling_before(c, cand_i[j], v, index))
        {
            v = c;
            index = cand_i[j];
        }
    }
    *out = index;
}

extern "C" __global__ void e3_sample_f32(const float* x, int* out, int rows, int vocab, int ld, float inv_temperature, int top_k, float top_p, long long seed, long long step)
{
    E3_SHARED(e3_sampling_shared, shared, );
    if ((int)blockIdx.x < rows)
        e3_sample_row(x + (long long)blockIdx.x * ld, out + blockIdx.x, blockIdx.x, vocab, inv_temperature, top_k, top_p, seed, step, shared);
}

extern "C" __global__ void e3_sample_bf16(const e3_bf16* x, int* out, int rows, int vocab, int ld, float inv_temperature, int top_k, float top_p, long long seed, long long step)
{
    E3_SHARED(e3_sampling_shared, shared, );
    if ((int)blockIdx.x < rows)
        e3_sample_row(x + (long long)blockIdx.x * ld, out + blockIdx.x, blockIdx.x, vocab, inv_temperature, top_k, top_p, seed, step, shared);
}

// Block-wide sum of one double per thread by a fixed tree over the 256 shared slots; every thread gets the total.
__device__ __forceinline__ double e3_sampling_block_sum(double v, double* values)
{
    const int t = threadIdx.x;
    __syncthreads();
    values[t] = v;
    __syncthreads();
    for (int stride = E3_SAMPLING_THREADS / 2; stride > 0; stride >>= 1)
    {
        if (t < stride)
            values[t] += values[t + stride];
        __syncthreads();
    }
    return values[0];
}

template <typename T>
__device__ __forceinline__ void e3_topk_logprobs_row(const T* x, int vocab, int k, int* out_indices, float* out_logp, e3_sampling_shared& shared)
{
    float* scratch = shared.scratch;
    float m = E3_NEG_INF;
    float bad = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += E3_SAMPLING_THREADS)
    {
        const float z = e3_sampling_load(x + i);
        if (!(z - z == 0.0f))
            bad = 1.0f; // NaN or an infinity: z - z is NaN
        m = fmaxf(m, z);
    }
    if (e3_block_sum(bad, scratch) > 0.0f)
    {
        if (threadIdx.x == 0)
            out_indices[0] = -1;
        return;
    }
    const float row_max = e3_block_max(m, scratch);
    double sum = 0.0;
    for (int i = threadIdx.x; i < vocab; i += E3_SAMPLING_THREADS)
        sum += (double)expf(e3_sampling_load(x + i) - row_max);
    const double lse = (double)row_max + log(e3_sampling_block_sum(sum, shared.values));
    e3_sample_select_top_k(x, vocab, k, 1.0f, shared.values, shared.indices, shared.cand_z, shared.cand_i);
    if (threadIdx.x != 0)
        return;
    for (int j = 0; j < k; ++j)
    {
        out_indices[j] = shared.cand_i[j];
        const double logp = (double)shared.cand_z[j] - lse;
        out_logp[j] = (float)(logp < 0.0 ? logp : 0.0);
    }
}

extern "C" __global__ void e3_topk_logprobs_f32(const float* x, int* out_indices, float* out_logp, int rows, int vocab, int ld, int k)
{
    E3_SHARED(e3_sampling_shared, shared, );
    const int row = blockIdx.x;
    if (row < rows)
        e3_topk_logprobs_row(x + (long long)row * ld, vocab, k, out_indices + (long long)row * k, out_logp + (long long)row * k, shared);
}

extern "C" __global__ void e3_topk_logprobs_bf16(const e3_bf16* x, int* out_indices, float* out_logp, int rows, int vocab, int ld, int k)
{
    E3_SHARED(e3_sampling_shared, shared, );
    const int row = blockIdx.x;
    if (row < rows)
        e3_topk_logprobs_row(x + (long long)row * ld, vocab, k, out_indices + (long long)row * k, out_logp + (long long)row * k, shared);
}
