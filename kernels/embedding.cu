// embedding.cu: token embedding lookup and its gradient.
//
// Math: y[t, :] = table[ids[t], :] for t < tokens (e3_embedding_bf16_f32: a bf16 table's rows widened to fp32, exactly,
//   for the fp32 trainer, which would otherwise widen the whole table to gather B*T rows of it).  Backward: dtable[ids[t], :] += dy[t, :]. e3_embedding_backward_f32
//   uses atomicAdd, since a token id may repeat (not bit-deterministic); e3_embedding_backward_grouped_f32 (the training
//   backend's) gets the tokens grouped by id from the host and adds each id's rows in token order, one block per
//   unique id (deterministic). Ids are validated against the table's rows on the host before launch.
// Memory traffic per call: forward reads tokens rows of the table and writes tokens rows: 2*tokens*dim*E bytes
//   (bf16 to fp32: 6*tokens*dim) (+4*tokens for ids); backward reads dy and atomically adds into dtable: 2*tokens*dim*4 bytes.
// Launch shape: grid = (tokens), block = (256); one block per token, threads stride the row (bf16: 8 elements, one
//   16-byte access, a step when dim is a multiple of 8 and both pointers are 16-byte aligned). dtable must be
//   zeroed (or hold the gradient to accumulate into) before the backward kernel.
#include "common.cuh"

extern "C" __global__ void e3_embedding_f32(const float* table, const int* ids, float* y, int tokens, int dim)
{
    const int t = blockIdx.x;
    if (t >= tokens)
        return;
    const float* src = table + (long long)ids[t] * dim;
    float* dst = y + (long long)t * dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        dst[c] = src[c];
}

// Block t moves the row of the bf16 table that ids[t] names into row t of y: vector(src, dst) takes 8 elements (one
// 16-byte load) where dim and both pointers allow it, scalar(src, dst) one element otherwise.
template <class Out, class Vector, class Scalar>
__device__ __forceinline__ void e3_embedding_bf16_row(const e3_bf16* table, const int* ids, Out* y, int tokens, int dim,
                                                      Vector vector, Scalar scalar)
{
    const int t = blockIdx.x;
    if (t >= tokens)
        return;
    const e3_bf16* src = table + (long long)ids[t] * dim;
    Out* dst = y + (long long)t * dim;
    if ((dim & 7) == 0 && e3_is_aligned16(table) && e3_is_aligned16(y))
    {
        for (int c = 8 * threadIdx.x; c < dim; c += 8 * blockDim.x)
            vector(src + c, dst + c);
        return;
    }
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        scalar(src + c, dst + c);
}

extern "C" __global__ void e3_embedding_bf16(const e3_bf16* table, const int* ids, e3_bf16* y, int tokens, int dim)
{
    e3_embedding_bf16_row(table, ids, y, tokens, dim,
        [](const e3_bf16* src, e3_bf16* dst) { e3_store16(dst, e3_load16(src)); },
        [](const e3_bf16* src, e3_bf16* dst) { *dst = *src; });
}

extern "C" __global__ void e3_embedding_bf16_f32(const e3_bf16* table, const int* ids, float* y, int tokens, int dim)
{
    e3_embedding_bf16_row(table, ids, y, tokens, dim,
        [](const e3_bf16* src, float* dst)
        {
            float wide[8];
            e3_load_bf16x8(src, wide);
            e3_vec16 low, high;
            for (int i = 0; i < 4; ++i)
            {
                low.word[i] = __float_as_uint(wide[i]);
                high.word[i] = __float_as_uint(wide[4 + i]);
            }
            e3_store16(dst, low);
            e3_store16(dst + 4, high);
        },
        [](const e3_bf16* src, float* dst) { *dst = e3_bf16_to_float(*src); });
}

extern "C" __global__ void e3_embedding_backward_f32(const float* dy, const int* ids, float* dtable, int tokens, int dim)
{
    const int t = blockIdx.x;
    if (t >= tokens)
        return;
    const float* src = dy + (long long)t * dim;
    float* dst = dtable + (long long)ids[t] * dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        atomicAdd(&dst[c], src[c]);
}

// Deterministic backward (no atomics): the host groups the tokens by id. plan holds, as ints, the unique ids
// [unique], then offsets [unique + 1] into, then the token indices [tokens] sorted by id and, within an id, in
// token order. One block per unique id adds that id's rows to dtable in token order, so the result does not depend
// on scheduling (and equals a sequential loop over tokens). Launch: grid = (unique), block = (256).
extern "C" __global__ void e3_embedding_backward_grouped_f32(const float* dy, const int* plan, float* dtable, int unique, int dim)
{
    const int u = blockIdx.x;
    if (u >= unique)
        return;
    const int* offsets = plan + unique;
    const int* order = offsets + unique + 1;
    float* dst = dtable + (long long)plan[u] * dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
    {
        float acc = dst[c];
        for (int at = offsets[u]; at < offsets[u + 1]; ++at)
            acc += dy[(long long)order[at] * dim + c];
        dst[c] = acc;
    }
}
