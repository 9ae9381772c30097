// attention.cu: causal grouped-query attention over a KV cache (prefill and decode), the cache append, and the
// training forward (log-sum-exp saved) and flash-style backward.
//
// Math, for sequence b, head h (kv head g = h / (heads / kv_heads)), query row t at absolute position
// p = start + t, with q [B*T, heads*D], caches [B, capacity, kv_heads*D]:
//   append:   k_cache[b, start + t, g*D + d] = k[b*T + t, g*D + d]   (same for v)
//   scores:   s_j = scale * (q_t . k_j)              for keys j = 0..p (causal: later keys never seen)
//   output:   o_t = sum_j softmax(s)_j * v_j
//   computed flash-style: keys arrive in tiles of 32; each query row keeps a running max m, a running sum
//   l = sum exp(s_j - m) and an unnormalised accumulator acc; a new tile with max m' rescales both by
//   exp(m - m'), so no [T x T] matrix ever reaches global memory. o = acc / l at the end.
//   Statistics (optional, null skips them): stats[2*((b*T + t)*heads + h) + {0, 1}] = (m, m + log l), the row max and
//   the log-sum-exp of the scaled scores: what a flash-style backward needs to recompute the probabilities
//   P_j = exp(s_j - lse) tile by tile (the backward kernels go next to the forward ones in this file).
//   bf16: bf16 storage, fp32 math throughout; only the output is rounded (once) to bf16.
//
// Kernels and launch shapes (E3_ATTN_* below; LaunchShapes in C# mirrors them):
//   e3_kv_append_*:        grid-stride over B*T*kv_heads*D elements, block 256.
//   e3_attention_prefill_*: grid (ceil(T / 16), heads, B), block 128 (4 warps). A block owns 16 query rows of
//     one head; warp w holds rows w, w+4, w+8, w+12. Key tiles of 32 (K padded to D+1 floats per row so that
//     lane j reading key j is bank-conflict free, V, and the block's Q) are staged in dynamic shared memory:
//     (16*D + 32*(D+1) + 32*D) * 4 bytes, 41,088 for D = 128; D > 128 needs the opt-in above 48 KiB. Tiles
//     whose first key lies after the block's last query position (above the diagonal) are never loaded.
//   e3_attention_decode_*:  T = 1. grid (splits, kv_heads * ceil(group / 16), B), block 128, same shared
//     memory. Split-K: block x covers keys [x*keys_per_split, min((x+1)*keys_per_split, start+1)); its rows
//     are the (up to 16) query heads sharing one kv head, so each K/V tile is read once per group. It writes
//     unnormalised partials: partial_o[((b*heads + h)*splits + x)*D + d] and partial_ml[...*2] = (m, l).
//   e3_attention_decode_combine_*: grid (heads, B), block 32: o = sum_x exp(m_x - M) acc_x / sum_x exp(m_x - M) l_x.
//   In both, a warp computes only its present rows (decode: a block's rows are one kv head's query heads, 4 of 16
//   for Qwen3-8B, so one row per warp), and bf16 tiles of head_dim 32..128 arrive through 16-byte loads.
// Memory traffic per call (E bytes per element): append 4*B*T*kvw*E; prefill reads Q once and K, V once per
//   query tile: B*heads*D*E*(T + 2*ceil(T/16)*(start + T/2)) and writes O; decode reads K, V once per group:
//   2*B*kv_heads*(start+1)*D*E, plus 4*(D+2)*B*heads*splits bytes of partials written and read back.
//
//   e3_attention_prefill_mma_bf16: the bf16 prefill for head_dim 128 on tensor cores (sm_80+), at the end of this
//     file with its own launch shape; AttentionKernels picks it, E3_ATTENTION_TENSOR_CORES=0 turns it off.
// Emulator coverage (native/ runs the portable paths):
//   covered:     every kernel in this file, the tensor-core prefill through e3_mma_bf16_16x8x16's portable form
//                (the same fragments, the instruction's result computed with shuffles).
//   not covered: the mma.sync instruction itself, the 48 KiB dynamic shared memory limit and its opt-in (the
//                emulator allocates whatever the launch asks for; AttentionKernels checks the device's opt-in limit
//                itself), shared-memory bank conflicts and timing, and expf's GPU accuracy (the emulator uses libm's).
// Training (fp32 only, no cache, positions 0..T-1; q [B*T, heads*D], k, v [B*T, kv_heads*D]):
//   e3_attention_train_forward_f32: the prefill body with k, v read as a cache of capacity T; writes o and
//     lse[(b*T + t)*heads + h] = m + log l. Same grid, block and shared memory as the prefill.
//   Backward, three launches, recomputing P_tj = exp(scale*q_t.k_j - lse_t) tile by tile (no [T x T] in global memory):
//     e3_attention_backward_delta_f32: delta_t = dO_t . O_t per (row, head); one warp per item, 4 per block.
//     e3_attention_backward_dq_f32: grid (ceil(T/16), heads, B), block 128. A block holds 16 query rows (Q, dO, lse,
//       delta) and walks the key tiles of 16 up to the diagonal: dS = P * (dO.V^T - delta), dQ += scale * dS K.
//     e3_attention_backward_dkdv_f32: grid (ceil(T/16), kv_heads, B), block 128. A block holds 16 keys (K, V) and walks
//       its group's query heads, then the query tiles from its own to the last: dV += P^T dO, dK += scale * dS^T Q.
//       The GQA sum over query heads happens inside the block in a fixed order.
//     Shared memory (fp32): Q, dO [16][D], K, V [16][D+1], P, dS [16][16], lse, delta [16]:
//       (64*D + 576) * 4 bytes, 35,072 for D = 128; D > 128 needs the opt-in above 48 KiB.
//     Each thread accumulates fixed elements of its block's [16][D] output tile(s) in registers, so the backward uses
//     no atomics and is bit-deterministic; the price is computing P and dS twice (once per kernel), the trade
//     FlashAttention-2 makes for its separate dQ pass.
//   Traffic (fp32): forward as the prefill. Backward: delta reads O and dO (8*B*T*heads*D bytes); dq reads Q, dO once and
//     K, V once per query tile up to the diagonal; dk/dv reads K, V once and Q, dO once per key tile from the diagonal
//     on: about 4*B*D*(4*heads*T + 2*kv_heads*T + heads*T*T/8) bytes read, 4*B*T*D*(heads + 2*kv_heads) written.
#include "common.cuh"

#define E3_ATTN_WARPS 4
#define E3_ATTN_THREADS (32 * E3_ATTN_WARPS)
#define E3_ATTN_ROWS 16 // query rows per block
#define E3_ATTN_ROWS_PER_WARP (E3_ATTN_ROWS / E3_ATTN_WARPS)
#define E3_ATTN_KEYS 32 // keys per tile: one per lane while scoring

// Register arrays stay in registers only when every index is a compile-time constant after unrolling;
// g++ (the emulator) does not know the pragma, and does not need it.
#ifdef __CUDACC_RTC__
#define E3_ATTN_UNROLL _Pragma("unroll")
#else
#define E3_ATTN_UNROLL
#endif

// Where query row r (warp r % 4, slot r / 4) and column d sit in the block's shared Q: [d][warp][slot].
#define E3_ATTN_Q_AT(r, d) (((d) * E3_ATTN_WARPS + (r) % E3_ATTN_WARPS) * E3_ATTN_ROWS_PER_WARP + (r) / E3_ATTN_WARPS)

// Running softmax state of the rows one warp owns; lane holds output columns d = lane + 32*c, c < CHUNKS.
template <int CHUNKS>
struct e3_attn_rows
{
    float m[E3_ATTN_ROWS_PER_WARP];
    float l[E3_ATTN_ROWS_PER_WARP];
    float acc[E3_ATTN_ROWS_PER_WARP][CHUNKS];
};

// Loads one tile of keys [tile, tile + tile_keys) of K and V into shared memory as fp32 (rows past tile_keys as 0).
// The element loop, for any T and head_dim.
template <int CHUNKS, typename T>
__device__ __forceinline__ void e3_attn_load_tile(const T* k, const T* v, long long kv_stride, int tile, int tile_keys,
    int head_dim, float* ks, float* vs, int k_stride)
{
    for (int i = threadIdx.x; i < E3_ATTN_KEYS * head_dim; i += blockDim.x)
    {
        const int j = i / head_dim;
        const int d = i - j * head_dim;
        const bool present = j < tile_keys;
        const long long at = (long long)(tile + j) * kv_stride + d;
        ks[j * k_stride + d] = present ? e3_load_float(k + at) : 0.0f;
        vs[j * head_dim + d] = present ? e3_load_float(v + at) : 0.0f;
    }
}

// One tensor's share of a bf16 tile when head_dim = 32 * CHUNKS: a key row is 4 * CHUNKS 16-byte vectors, and each of
// the 128 threads moves CHUNKS of the tile's 128 * CHUNKS, all loads issued before the first store to shared memory.
// The row length is a compile-time constant here, so the index arithmetic is shifts and masks, not divisions.
template <int CHUNKS>
__device__ __forceinline__ void e3_attn_stage_bf16x8(const e3_bf16* src, long long kv_stride, int tile, int tile_keys,
    float* dst, int dst_stride)
{
    constexpr int PER_KEY = 4 * CHUNKS;
    e3_vec16 staged[CHUNKS];
    E3_ATTN_UNROLL
    for (int c = 0; c < CHUNKS; ++c)
    {
        const int i = threadIdx.x + c * E3_ATTN_THREADS;
        const int j = i / PER_KEY;
        staged[c] = e3_vec16{};
        if (j < tile_keys)
            staged[c] = e3_load16(src + (long long)(tile + j) * kv_stride + (i % PER_KEY) * 8);
    }
    E3_ATTN_UNROLL
    for (int c = 0; c < CHUNKS; ++c)
    {
        const int i = threadIdx.x + c * E3_ATTN_THREADS;
        float* row = dst + (i / PER_KEY) * dst_stride + (i % PER_KEY) * 8;
        E3_ATTN_UNROLL
        for (int e = 0; e < 8; ++e)
            row[e] = e3_vec16_bf16_at(staged[c], e);
    }
}

// bf16 caches whose rows are whole 16-byte vectors (head_dim = 32 * CHUNKS, the cache's row stride a multiple of 8,
// k and v 16-byte aligned, 128 threads): each thread issues its 16-byte loads of a tensor's tile before it stores any,
// so a block has 8 KB (D = 128) in flight at once, where the element loop keeps a few 2-byte loads per thread. The
// values stored are those of the element loop.
template <int CHUNKS>
__device__ __forceinline__ void e3_attn_load_tile(const e3_bf16* k, const e3_bf16* v, long long kv_stride, int tile,
    int tile_keys, int head_dim, float* ks, float* vs, int k_stride)
{
    // Head sizes above 128 keep the element loop: ptxas hoists every load of a tile above its stores, and for CHUNKS > 4
    // the staged vectors would push the kernel past the 128 registers that four blocks an SM allow.
    if (CHUNKS > 4 || head_dim != 32 * CHUNKS || (kv_stride & 7) != 0 || !e3_is_aligned16(k) || !e3_is_aligned16(v) || blockDim.x != E3_ATTN_THREADS)
    {
        e3_attn_load_tile<CHUNKS, e3_bf16>(k, v, kv_stride, tile, tile_keys, head_dim, ks, vs, k_stride);
        return;
    }
    e3_attn_stage_bf16x8<CHUNKS>(k, kv_stride, tile, tile_keys, ks, k_stride);
    e3_attn_stage_bf16x8<CHUNKS>(v, kv_stride, tile, tile_keys, vs, head_dim);
}

// The two products of a tile for the first ACTIVE of a warp's rows; the rest of its rows are missing (past `rows`),
// and skipping them matters in decode, where a block's rows are the query heads of one kv head: 4 for Qwen3-8B, so
// each warp has one real row of its four and would otherwise do four times the work.
// Scores: s[i] += q_row(i) . k_(tile + lane). Q sits in shared memory as [d][warp][i] (E3_ATTN_Q_AT), so the four
// values a warp needs at column d are one 16-byte broadcast load: two shared loads per four FMAs, where [row][d] took
// five, and shared-memory bandwidth, not arithmetic, bounds this loop.
struct alignas(16) e3_attn_q4
{
    float v[E3_ATTN_ROWS_PER_WARP];
};

template <int ACTIVE>
__device__ __forceinline__ void e3_attn_scores(const float* qs, const float* krow, int head_dim, int warp, float* s)
{
    const e3_attn_q4* q4 = reinterpret_cast<const e3_attn_q4*>(qs) + warp;
    for (int d = 0; d < head_dim; ++d)
    {
        const float kd = krow[d];
        const e3_attn_q4 q = q4[d * E3_ATTN_WARPS];
        E3_ATTN_UNROLL
        for (int i = 0; i < ACTIVE; ++i)
            s[i] += q.v[i] * kd;
    }
}

// acc += P V: lane j's probability is broadcast; lanes own output columns.
template <int CHUNKS, int ACTIVE>
__device__ __forceinline__ void e3_attn_accumulate(const float* vs, const float* p, int tile_keys, int head_dim, int lane,
    e3_attn_rows<CHUNKS>& state)
{
    for (int j = 0; j < tile_keys; ++j)
    {
        float pj[ACTIVE];
        E3_ATTN_UNROLL
        for (int i = 0; i < ACTIVE; ++i)
            pj[i] = __shfl_sync(E3_FULL_MASK, p[i], j);
        const float* vrow = vs + j * head_dim;
        E3_ATTN_UNROLL
        for (int c = 0; c < CHUNKS; ++c)
        {
            const int d = lane + 32 * c;
            const float vd = d < head_dim ? vrow[d] : 0.0f;
            E3_ATTN_UNROLL
            for (int i = 0; i < ACTIVE; ++i)
                state.acc[i][c] += pj[i] * vd;
        }
    }
}

// Calls body<n>() for the warp's active row count n (warp-uniform), so each product loop has a constant trip count.
static_assert(E3_ATTN_ROWS_PER_WARP == 4, "E3_ATTN_FOR_ACTIVE lists the row counts 1..4");
#define E3_ATTN_FOR_ACTIVE(active, body) \
    switch (active) \
    { \
    case 1: body(1); break; \
    case 2: body(2); break; \
    case 3: body(3); break; \
    case 4: body(4); break; \
    default: break; \
    }

// One block's work: `rows` query rows (row r at q + r*q_stride, allowed keys up to limit_base + r*limit_step)
// against keys [key_begin, key_end) of one kv head (key j at k + j*kv_stride). Leaves each warp's state for
// its rows (r = i*E3_ATTN_WARPS + warp) in `state`. Every thread of the block must call it (it syncs).
template <int CHUNKS, typename T>
__device__ __forceinline__ void e3_attn_block(const T* q, long long q_stride, int rows, int limit_base, int limit_step,
    const T* k, const T* v, long long kv_stride, int key_begin, int key_end, int head_dim, float scale, float* smem,
    e3_attn_rows<CHUNKS>& state)
{
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int k_stride = head_dim + 1; // odd row stride: lane j reading row j hits bank (j + d) % 32
    float* qs = smem;
    float* ks = qs + E3_ATTN_ROWS * head_dim;
    float* vs = ks + E3_ATTN_KEYS * k_stride;

    for (int i = threadIdx.x; i < E3_ATTN_ROWS * head_dim; i += blockDim.x)
    {
        const int r = i / head_dim;
        const int d = i - r * head_dim;
        qs[E3_ATTN_Q_AT(r, d)] = r < rows ? e3_load_float(q + r * q_stride + d) : 0.0f;
    }
    int limit[E3_ATTN_ROWS_PER_WARP]; // last key each of this warp's rows may see; -1 for a missing row
    int active = 0;                   // this warp's rows are r = i*E3_ATTN_WARPS + warp, so the present ones are i < active
    E3_ATTN_UNROLL
    for (int i = 0; i < E3_ATTN_ROWS_PER_WARP; ++i)
    {
        const int r = i * E3_ATTN_WARPS + warp;
        limit[i] = r < rows ? min(limit_base + r * limit_step, key_end - 1) : -1;
        if (r < rows)
            active = i + 1;
        state.m[i] = E3_NEG_INF;
        state.l[i] = 0.0f;
        E3_ATTN_UNROLL
        for (int c = 0; c < CHUNKS; ++c)
            state.acc[i][c] = 0.0f;
    }

    for (int tile = key_begin; tile < key_end; tile += E3_ATTN_KEYS)
    {
        const int tile_keys = min(E3_ATTN_KEYS, key_end - tile);
        __syncthreads(); // every warp is done with the previous tile (and, the first time, nothing is pending)
        e3_attn_load_tile<CHUNKS>(k, v, kv_stride, tile, tile_keys, head_dim, ks, vs, k_stride);
        __syncthreads();

        // Scores of all this warp's rows against key `tile + lane`: one shared K read feeds every row.
        float s[E3_ATTN_ROWS_PER_WARP];
        E3_ATTN_UNROLL
        for (int i = 0; i < E3_ATTN_ROWS_PER_WARP; ++i)
            s[i] = 0.0f;
        int warp_limit = -1;
        E3_ATTN_UNROLL
        for (int i = 0; i < E3_ATTN_ROWS_PER_WARP; ++i)
            warp_limit = max(warp_limit, limit[i]);
        if (tile <= warp_limit) // otherwise every row of this warp is done with this tile
        {
#define E3_ATTN_SCORES(n) e3_attn_scores<n>(qs, ks + lane * k_stride, head_dim, warp, s)
            E3_ATTN_FOR_ACTIVE(active, E3_ATTN_SCORES)
#undef E3_ATTN_SCORES
        }

        const int key = tile + lane;
        float p[E3_ATTN_ROWS_PER_WARP];
        E3_ATTN_UNROLL
        for (int i = 0; i < E3_ATTN_ROWS_PER_WARP; ++i)
        {
            p[i] = 0.0f;
            if (tile > limit[i])
                continue; // the whole tile is in this row's future (warp-uniform branch)
            const bool visible = key <= limit[i];
            const float scaled = visible ? s[i] * scale : E3_NEG_INF;
            // Key `tile` is visible, so the tile max is finite and exp(-inf - m) below is a clean 0.
            const float m_new = fmaxf(state.m[i], e3_warp_max(scaled));
            const float alpha = expf(state.m[i] - m_new);
            p[i] = visible ? expf(scaled - m_new) : 0.0f;
            state.l[i] = state.l[i] * alpha + e3_warp_sum(p[i]);
            state.m[i] = m_new;
            E3_ATTN_UNROLL
            for (int c = 0; c < CHUNKS; ++c)
                state.acc[i][c] *= alpha;
        }

#define E3_ATTN_ACCUMULATE(n) e3_attn_accumulate<CHUNKS, n>(vs, p, tile_keys, head_dim, lane, state)
        E3_ATTN_FOR_ACTIVE(active, E3_ATTN_ACCUMULATE)
#undef E3_ATTN_ACCUMULATE
    }
}

// Where one prefill block works, for the portable and the tensor-core kernels alike: rows_per_block query rows of head
// h = blockIdx.y of sequence blockIdx.z, from row `first` of the sequence (blockIdx.x blocks in), of which `rows` exist.
// The block's query and output row r is at (row0 + r) * q_stride + h * head_dim; key j of its kv head at
// kv_offset + j * kv_stride in the caches; keys after last_key are above the diagonal for every row of the block.
struct e3_attn_prefill_block
{
    int h, first, rows, last_key;
    long long q_stride, kv_stride, row0, kv_offset;
};

__device__ __forceinline__ e3_attn_prefill_block e3_attn_prefill_block_here(int rows_per_block, int tokens, int start, int capacity, int heads,
    int kv_heads, int head_dim)
{
    e3_attn_prefill_block w;
    const int b = blockIdx.z;
    w.h = blockIdx.y;
    w.first = blockIdx.x * rows_per_block;
    w.rows = min(rows_per_block, tokens - w.first);
    w.last_key = start + w.first + w.rows - 1;
    w.q_stride = (long long)heads * head_dim;
    w.kv_stride = (long long)kv_heads * head_dim;
    w.row0 = (long long)b * tokens + w.first;
    w.kv_offset = (long long)b * capacity * w.kv_stride + (long long)(w.h / (heads / kv_heads)) * head_dim;
    return w;
}

// One row's softmax statistics from its running max m and sum l: the (m, lse) pair at stats[2 * slot], or, with
// lse_only (the training forward), the log-sum-exp alone at stats[slot].
__device__ __forceinline__ void e3_attn_store_stats(float* stats, long long slot, float m, float l, int lse_only)
{
    const float lse = m + logf(l);
    if (lse_only)
    {
        stats[slot] = lse;
        return;
    }
    stats[slot * 2] = m;
    stats[slot * 2 + 1] = lse;
}

// lse_only: stats holds one float per (row, head), the log-sum-exp (the training forward), instead of (m, lse) pairs.
template <int CHUNKS, typename T>
__device__ __forceinline__ void e3_attn_prefill(const T* q, const T* k_cache, const T* v_cache, T* o, float* stats,
    int tokens, int start, int capacity, int heads, int kv_heads, int head_dim, float scale, float* smem, int lse_only)
{
    const e3_attn_prefill_block blk = e3_attn_prefill_block_here(E3_ATTN_ROWS, tokens, start, capacity, heads, kv_heads, head_dim);
    const int h = blk.h, first = blk.first, rows = blk.rows, last_key = blk.last_key;
    const long long q_stride = blk.q_stride, kv_stride = blk.kv_stride, row0 = blk.row0, kv_offset = blk.kv_offset;

    e3_attn_rows<CHUNKS> state;
    e3_attn_block<CHUNKS>(q + row0 * q_stride + (long long)h * head_dim, q_stride, rows, start + first, 1,
        k_cache + kv_offset, v_cache + kv_offset, kv_stride, 0, last_key + 1, head_dim, scale, smem, state);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    E3_ATTN_UNROLL
    for (int i = 0; i < E3_ATTN_ROWS_PER_WARP; ++i)
    {
        const int r = i * E3_ATTN_WARPS + warp;
        if (r >= rows)
            continue;
        const float inverse = 1.0f / state.l[i];
        T* out = o + (row0 + r) * q_stride + (long long)h * head_dim;
        E3_ATTN_UNROLL
        for (int c = 0; c < CHUNKS; ++c)
        {
            const int d = lane + 32 * c;
            if (d < head_dim)
                e3_store_float(out + d, state.acc[i][c] * inverse);
        }
        if (stats != 0 && lane == 0)
            e3_attn_store_stats(stats, (row0 + r) * heads + h, state.m[i], state.l[i], lse_only);
    }
}

template <int CHUNKS, typename T>
__device__ __forceinline__ void e3_attn_decode(const T* q, const T* k_cache, const T* v_cache, float* partial_o, float* partial_ml,
    int position, int capacity, int heads, int kv_heads, int head_dim, float scale, int keys_per_split, float* smem)
{
    const int split = blockIdx.x;
    const int splits = gridDim.x;
    const int group = heads / kv_heads;
    const int chunks = (group + E3_ATTN_ROWS - 1) / E3_ATTN_ROWS;
    const int g = blockIdx.y / chunks;
    const int h0 = g * group + (blockIdx.y % chunks) * E3_ATTN_ROWS;
    const int rows = min(E3_ATTN_ROWS, (g + 1) * group - h0);
    const int b = blockIdx.z;
    const long long kv_stride = (long long)kv_heads * head_dim;
    const long long kv_offset = (long long)b * capacity * kv_stride + (long long)g * head_dim;
    const int key_begin = split * keys_per_split;
    const int key_end = min(key_begin + keys_per_split, position + 1);

    e3_attn_rows<CHUNKS> state;
    e3_attn_block<CHUNKS>(q + ((long long)b * heads + h0) * head_dim, head_dim, rows, position, 0,
        k_cache + kv_offset, v_cache + kv_offset, kv_stride, key_begin, key_end, head_dim, scale, smem, state);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    E3_ATTN_UNROLL
    for (int i = 0; i < E3_ATTN_ROWS_PER_WARP; ++i)
    {
        const int r = i * E3_ATTN_WARPS + warp;
        if (r >= rows)
            continue;
        const long long slot = ((long long)b * heads + h0 + r) * splits + split;
        E3_ATTN_UNROLL
        for (int c = 0; c < CHUNKS; ++c)
        {
            const int d = lane + 32 * c;
            if (d < head_dim)
                partial_o[slot * head_dim + d] = state.acc[i][c];
        }
        if (lane == 0)
        {
            partial_ml[slot * 2] = state.m[i];
            partial_ml[slot * 2 + 1] = state.l[i];
        }
    }
}

template <typename T>
__device__ __forceinline__ void e3_attn_combine(const float* partial_o, const float* partial_ml, T* o, float* stats,
    int heads, int head_dim, int splits)
{
    const long long item = (long long)blockIdx.y * heads + blockIdx.x; // (b, h)
    const float* ml = partial_ml + item * splits * 2;
    float m = E3_NEG_INF;
    for (int x = 0; x < splits; ++x)
        m = fmaxf(m, ml[2 * x]);
    float l = 0.0f;
    for (int x = 0; x < splits; ++x)
        l += expf(ml[2 * x] - m) * ml[2 * x + 1];
    const float inverse = 1.0f / l;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    {
        float acc = 0.0f;
        for (int x = 0; x < splits; ++x)
            acc += expf(ml[2 * x] - m) * partial_o[(item * splits + x) * head_dim + d];
        e3_store_float(o + item * head_dim + d, acc * inverse);
    }
    if (stats != 0 && threadIdx.x == 0)
        e3_attn_store_stats(stats, item, m, l, 0);
}

template <typename T>
__device__ __forceinline__ void e3_kv_append(const T* k, const T* v, T* k_cache, T* v_cache, long long n, int tokens,
    int start, int capacity, int kv_width)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    {
        const long long row = i / kv_width;
        const long long b = row / tokens;
        const long long at = (b * capacity + start + (row - b * tokens)) * kv_width + (i - row * kv_width);
        k_cache[at] = k[i];
        v_cache[at] = v[i];
    }
}

// Head dims up to 64, 128 and 256 each get their own register footprint.
#define E3_ATTN_DISPATCH(call) \
    do { if (head_dim <= 64) call(2); else if (head_dim <= 128) call(4); else call(8); } while (0)

extern "C" __global__ void e3_kv_append_f32(const float* k, const float* v, float* k_cache, float* v_cache, long long n, int tokens_per_sequence, int start_position, int capacity, int kv_width)
{
    e3_kv_append(k, v, k_cache, v_cache, n, tokens_per_sequence, start_position, capacity, kv_width);
}

extern "C" __global__ void e3_kv_append_bf16(const e3_bf16* k, const e3_bf16* v, e3_bf16* k_cache, e3_bf16* v_cache, long long n, int tokens_per_sequence, int start_position, int capacity, int kv_width)
{
    e3_kv_append(k, v, k_cache, v_cache, n, tokens_per_sequence, start_position, capacity, kv_width);
}

#define E3_ATTN_PREFILL(chunks) e3_attn_prefill<chunks>(q, k_cache, v_cache, o, stats, tokens_per_sequence, start_position, capacity, heads, kv_heads, head_dim, scale, smem, 0)

extern "C" __global__ void e3_attention_prefill_f32(const float* q, const float* k_cache, const float* v_cache, float* o, float* stats, int tokens_per_sequence, int start_position, int capacity, int heads, int kv_heads, int head_dim, float scale)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_DISPATCH(E3_ATTN_PREFILL);
}

extern "C" __global__ void e3_attention_prefill_bf16(const e3_bf16* q, const e3_bf16* k_cache, const e3_bf16* v_cache, e3_bf16* o, float* stats, int tokens_per_sequence, int start_position, int capacity, int heads, int kv_heads, int head_dim, float scale)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_DISPATCH(E3_ATTN_PREFILL);
}

#define E3_ATTN_DECODE(chunks) e3_attn_decode<chunks>(q, k_cache, v_cache, partial_o, partial_ml, position, capacity, heads, kv_heads, head_dim, scale, keys_per_split, smem)

extern "C" __global__ void e3_attention_decode_f32(const float* q, const float* k_cache, const float* v_cache, float* partial_o, float* partial_ml, int position, int capacity, int heads, int kv_heads, int head_dim, float scale, int keys_per_split)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_DISPATCH(E3_ATTN_DECODE);
}

extern "C" __global__ void e3_attention_decode_bf16(const e3_bf16* q, const e3_bf16* k_cache, const e3_bf16* v_cache, float* partial_o, float* partial_ml, int position, int capacity, int heads, int kv_heads, int head_dim, float scale, int keys_per_split)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_DISPATCH(E3_ATTN_DECODE);
}

extern "C" __global__ void e3_attention_decode_combine_f32(const float* partial_o, const float* partial_ml, float* o, float* stats, int heads, int head_dim, int splits)
{
    e3_attn_combine(partial_o, partial_ml, o, stats, heads, head_dim, splits);
}

extern "C" __global__ void e3_attention_decode_combine_bf16(const float* partial_o, const float* partial_ml, e3_bf16* o, float* stats, int heads, int head_dim, int splits)
{
    e3_attn_combine(partial_o, partial_ml, o, stats, heads, head_dim, splits);
}

// ---- training: forward with the log-sum-exp, flash-style backward (fp32) ---------------------------------
// The training forward runs the prefill body at start 0 with k and v themselves as a cache of capacity T (the
// layouts coincide), writing lse[(b*T + t)*heads + h] instead of (m, lse) pairs.

#define E3_ATTN_TRAIN_FORWARD(chunks) e3_attn_prefill<chunks>(q, k, v, o, lse, tokens_per_sequence, 0, tokens_per_sequence, heads, kv_heads, head_dim, scale, smem, 1)

extern "C" __global__ void e3_attention_train_forward_f32(const float* q, const float* k, const float* v, float* o, float* lse, int tokens_per_sequence, int heads, int kv_heads, int head_dim, float scale)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_DISPATCH(E3_ATTN_TRAIN_FORWARD);
}

#define E3_ATTN_BWD_TILE 16 // query rows and keys per backward tile

// delta[i] = dO_i . O_i for every (row, head) item i: one warp per item, 4 warps per block.
extern "C" __global__ void e3_attention_backward_delta_f32(const float* o, const float* d_o, float* delta, long long items, int head_dim)
{
    const long long item = (long long)blockIdx.x * E3_ATTN_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (item >= items)
        return; // whole warps leave together
    const float* a = o + item * head_dim;
    const float* g = d_o + item * head_dim;
    float sum = 0.0f;
    for (int d = lane; d < head_dim; d += 32)
        sum += a[d] * g[d];
    sum = e3_warp_sum(sum);
    if (lane == 0)
        delta[item] = sum;
}

// Shared memory of a backward block (floats): Q and dO tiles [16][D], K and V tiles [16][D+1] (odd stride, so the
// threads of a warp reading 16 different keys at one column hit different banks), P and dS [16][16], lse and delta [16].
struct e3_attn_bwd_smem
{
    float* q;
    float* d_o;
    float* k;
    float* v;
    float* p;
    float* ds;
    float* lse;
    float* delta;
};

__device__ __forceinline__ e3_attn_bwd_smem e3_attn_bwd_layout(float* smem, int head_dim)
{
    e3_attn_bwd_smem s;
    s.q = smem;
    s.d_o = s.q + E3_ATTN_BWD_TILE * head_dim;
    s.k = s.d_o + E3_ATTN_BWD_TILE * head_dim;
    s.v = s.k + E3_ATTN_BWD_TILE * (head_dim + 1);
    s.p = s.v + E3_ATTN_BWD_TILE * (head_dim + 1);
    s.ds = s.p + E3_ATTN_BWD_TILE * E3_ATTN_BWD_TILE;
    s.lse = s.ds + E3_ATTN_BWD_TILE * E3_ATTN_BWD_TILE;
    s.delta = s.lse + E3_ATTN_BWD_TILE;
    return s;
}

// dst[r*dst_stride + d] = src[r*src_stride + d] for r < present, 0 for the tile's missing rows.
__device__ __forceinline__ void e3_attn_bwd_load(float* dst, int dst_stride, const float* src, long long src_stride, int present, int head_dim)
{
    for (int i = threadIdx.x; i < E3_ATTN_BWD_TILE * head_dim; i += blockDim.x)
    {
        const int r = i / head_dim;
        const int d = i - r * head_dim;
        dst[r * dst_stride + d] = r < present ? src[r * src_stride + d] : 0.0f;
    }
}

// Query rows q0.. (q_rows of them, head h) into the Q/dO tiles with their lse and delta.
__device__ __forceinline__ void e3_attn_bwd_load_queries(const e3_attn_bwd_smem& s, const float* q, const float* d_o, const float* lse,
    const float* delta, long long row0, int q_rows, int h, int heads, int head_dim)
{
    const long long q_stride = (long long)heads * head_dim;
    e3_attn_bwd_load(s.q, head_dim, q + row0 * q_stride + (long long)h * head_dim, q_stride, q_rows, head_dim);
    e3_attn_bwd_load(s.d_o, head_dim, d_o + row0 * q_stride + (long long)h * head_dim, q_stride, q_rows, head_dim);
    if (threadIdx.x < E3_ATTN_BWD_TILE)
    {
        const int i = threadIdx.x;
        s.lse[i] = i < q_rows ? lse[(row0 + i) * heads + h] : 0.0f;
        s.delta[i] = i < q_rows ? delta[(row0 + i) * heads + h] : 0.0f;
    }
}

// P_ij = exp(scale*q_i.k_j - lse_i) and dS_ij = P_ij * (dO_i.v_j - delta_i) for the tiles in shared memory: query i at
// position q0 + i, key j at k0 + j; 0 outside the causal triangle and for missing rows. Syncs before returning.
__device__ __forceinline__ void e3_attn_bwd_scores(const e3_attn_bwd_smem& s, int q0, int q_rows, int k0, int k_rows, int head_dim, float scale)
{
    const int k_stride = head_dim + 1;
    for (int e = threadIdx.x; e < E3_ATTN_BWD_TILE * E3_ATTN_BWD_TILE; e += blockDim.x)
    {
        const int i = e / E3_ATTN_BWD_TILE;
        const int j = e - i * E3_ATTN_BWD_TILE;
        float p = 0.0f;
        float ds = 0.0f;
        if (i < q_rows && j < k_rows && k0 + j <= q0 + i)
        {
            float score = 0.0f;
            float dp = 0.0f;
            for (int d = 0; d < head_dim; ++d)
            {
                score += s.q[i * head_dim + d] * s.k[j * k_stride + d];
                dp += s.d_o[i * head_dim + d] * s.v[j * k_stride + d];
            }
            p = expf(score * scale - s.lse[i]);
            ds = p * (dp - s.delta[i]);
        }
        s.p[e] = p;
        s.ds[e] = ds;
    }
    __syncthreads();
}

// sum over t < 16 of coefficient[t * coefficient_stride] * column[t * column_stride]: one element of a product of a
// 16 x 16 tile (P or dS, read by row with stride 1 or by column with stride 16) and a 16-row tile column.
__device__ __forceinline__ float e3_attn_bwd_contract(const float* coefficient, int coefficient_stride, const float* column, int column_stride)
{
    float sum = 0.0f;
    for (int t = 0; t < E3_ATTN_BWD_TILE; ++t)
        sum += coefficient[t * coefficient_stride] * column[t * column_stride];
    return sum;
}

// dQ for 16 query rows of one head: loops over the key tiles up to the diagonal. Thread t owns elements
// e = t + c*blockDim.x of the [16][D] tile (CHUNKS = 16*D / 128 covers it), so no two threads write one element.
template <int CHUNKS>
__device__ __forceinline__ void e3_attn_bwd_dq(const float* q, const float* k, const float* v, const float* d_o, const float* lse,
    const float* delta, float* dq, int tokens, int heads, int kv_heads, int head_dim, float scale, float* smem)
{
    const int h = blockIdx.y;
    const int b = blockIdx.z;
    const int q0 = blockIdx.x * E3_ATTN_BWD_TILE;
    const int q_rows = min(E3_ATTN_BWD_TILE, tokens - q0);
    const long long kv_stride = (long long)kv_heads * head_dim;
    const long long kv_offset = (long long)b * tokens * kv_stride + (long long)(h / (heads / kv_heads)) * head_dim;
    const long long row0 = (long long)b * tokens + q0;
    const e3_attn_bwd_smem s = e3_attn_bwd_layout(smem, head_dim);
    e3_attn_bwd_load_queries(s, q, d_o, lse, delta, row0, q_rows, h, heads, head_dim);

    float acc[CHUNKS];
    E3_ATTN_UNROLL
    for (int c = 0; c < CHUNKS; ++c)
        acc[c] = 0.0f;
    const int last_key = q0 + q_rows - 1;
    for (int k0 = 0; k0 <= last_key; k0 += E3_ATTN_BWD_TILE)
    {
        const int k_rows = min(E3_ATTN_BWD_TILE, tokens - k0);
        __syncthreads(); // the previous tile's P, dS and K are no longer read
        e3_attn_bwd_load(s.k, head_dim + 1, k + kv_offset + k0 * kv_stride, kv_stride, k_rows, head_dim);
        e3_attn_bwd_load(s.v, head_dim + 1, v + kv_offset + k0 * kv_stride, kv_stride, k_rows, head_dim);
        __syncthreads();
        e3_attn_bwd_scores(s, q0, q_rows, k0, k_rows, head_dim, scale);
        E3_ATTN_UNROLL
        for (int c = 0; c < CHUNKS; ++c)
        {
            const int e = threadIdx.x + c * blockDim.x;
            if (e >= E3_ATTN_BWD_TILE * head_dim)
                continue;
            const int i = e / head_dim;
            acc[c] += e3_attn_bwd_contract(s.ds + i * E3_ATTN_BWD_TILE, 1, s.k + (e - i * head_dim), head_dim + 1); // dS_i: K
        }
    }
    const long long q_stride = (long long)heads * head_dim;
    E3_ATTN_UNROLL
    for (int c = 0; c < CHUNKS; ++c)
    {
        const int e = threadIdx.x + c * blockDim.x;
        const int i = e / head_dim;
        if (e < E3_ATTN_BWD_TILE * head_dim && i < q_rows)
            dq[(row0 + i) * q_stride + (long long)h * head_dim + (e - i * head_dim)] = acc[c] * scale;
    }
}

// dK and dV for 16 keys of one kv head: loops over the group's query heads, then over the query tiles from the
// keys' own tile to the end, in a fixed order, so the GQA sum is deterministic and needs no atomics.
template <int CHUNKS>
__device__ __forceinline__ void e3_attn_bwd_dkdv(const float* q, const float* k, const float* v, const float* d_o, const float* lse,
    const float* delta, float* dk, float* dv, int tokens, int heads, int kv_heads, int head_dim, float scale, float* smem)
{
    const int g = blockIdx.y;
    const int b = blockIdx.z;
    const int k0 = blockIdx.x * E3_ATTN_BWD_TILE;
    const int k_rows = min(E3_ATTN_BWD_TILE, tokens - k0);
    const int group = heads / kv_heads;
    const long long kv_stride = (long long)kv_heads * head_dim;
    const long long kv_row0 = (long long)b * tokens + k0;
    const e3_attn_bwd_smem s = e3_attn_bwd_layout(smem, head_dim);
    e3_attn_bwd_load(s.k, head_dim + 1, k + kv_row0 * kv_stride + (long long)g * head_dim, kv_stride, k_rows, head_dim);
    e3_attn_bwd_load(s.v, head_dim + 1, v + kv_row0 * kv_stride + (long long)g * head_dim, kv_stride, k_rows, head_dim);

    float acc_k[CHUNKS];
    float acc_v[CHUNKS];
    E3_ATTN_UNROLL
    for (int c = 0; c < CHUNKS; ++c)
    {
        acc_k[c] = 0.0f;
        acc_v[c] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; ++h)
    {
        for (int q0 = k0; q0 < tokens; q0 += E3_ATTN_BWD_TILE) // earlier query tiles see none of these keys
        {
            const int q_rows = min(E3_ATTN_BWD_TILE, tokens - q0);
            __syncthreads(); // the previous tile's Q, dO, P and dS are no longer read
            e3_attn_bwd_load_queries(s, q, d_o, lse, delta, (long long)b * tokens + q0, q_rows, h, heads, head_dim);
            __syncthreads();
            e3_attn_bwd_scores(s, q0, q_rows, k0, k_rows, head_dim, scale);
            E3_ATTN_UNROLL
            for (int c = 0; c < CHUNKS; ++c)
            {
                const int e = threadIdx.x + c * blockDim.x;
                if (e >= E3_ATTN_BWD_TILE * head_dim)
                    continue;
                const int j = e / head_dim;
                const int d = e - j * head_dim;
                acc_k[c] += e3_attn_bwd_contract(s.ds + j, E3_ATTN_BWD_TILE, s.q + d, head_dim);  // dS^T_j: Q
                acc_v[c] += e3_attn_bwd_contract(s.p + j, E3_ATTN_BWD_TILE, s.d_o + d, head_dim); // P^T_j: dO
            }
        }
    }
    E3_ATTN_UNROLL
    for (int c = 0; c < CHUNKS; ++c)
    {
        const int e = threadIdx.x + c * blockDim.x;
        const int j = e / head_dim;
        if (e < E3_ATTN_BWD_TILE * head_dim && j < k_rows)
        {
            const long long at = (kv_row0 + j) * kv_stride + (long long)g * head_dim + (e - j * head_dim);
            dk[at] = acc_k[c] * scale;
            dv[at] = acc_v[c];
        }
    }
}

// 16 * D / 128 elements per thread: head dims up to 64, 128 and 256.
#define E3_ATTN_BWD_DISPATCH(call) \
    do { if (head_dim <= 64) call(8); else if (head_dim <= 128) call(16); else call(32); } while (0)

#define E3_ATTN_BWD_DQ(chunks) e3_attn_bwd_dq<chunks>(q, k, v, d_o, lse, delta, dq, tokens_per_sequence, heads, kv_heads, head_dim, scale, smem)
#define E3_ATTN_BWD_DKDV(chunks) e3_attn_bwd_dkdv<chunks>(q, k, v, d_o, lse, delta, dk, dv, tokens_per_sequence, heads, kv_heads, head_dim, scale, smem)

extern "C" __global__ void e3_attention_backward_dq_f32(const float* q, const float* k, const float* v, const float* d_o, const float* lse, const float* delta, float* dq, int tokens_per_sequence, int heads, int kv_heads, int head_dim, float scale)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_BWD_DISPATCH(E3_ATTN_BWD_DQ);
}

extern "C" __global__ void e3_attention_backward_dkdv_f32(const float* q, const float* k, const float* v, const float* d_o, const float* lse, const float* delta, float* dk, float* dv, int tokens_per_sequence, int heads, int kv_heads, int head_dim, float scale)
{
    E3_DYNAMIC_SHARED(float, smem);
    E3_ATTN_BWD_DISPATCH(E3_ATTN_BWD_DKDV);
}

// ---- Tensor-core prefill: bf16, head_dim 128 ----------------------------------------------------------------------
// The same function as e3_attention_prefill_bf16 (causal GQA over the cache, online softmax, output rounded to bf16
// once, optional (m, lse) statistics), with both products on tensor cores: mma.sync m16n8k16, bf16 inputs, fp32
// accumulation. The portable kernel does them on CUDA cores in fp32 and is bounded by shared-memory bandwidth at a few
// percent of what the tensor cores give; prefill attention grows with T^2, so at a few hundred tokens it is a large part
// of a layer. What differs numerically: the probabilities are rounded to bf16 before the P·V product (FlashAttention-2
// does the same), a relative 2^-9 on each term, below the bf16 rounding of the output.
// Launch: grid (ceil(T / 64), heads, B), block 128 (4 warps; warp w owns the block's query rows 16w..16w+15), dynamic
//   shared memory 2 * 64 * 136 * 2 = 34,816 bytes: one tile of 64 keys of K and of V, rows padded from 128 to 136 bf16
//   so that the fragment reads below hit 32 distinct banks. The host uses it for head_dim 128 with 16-byte-aligned
//   tensors on sm_80 and newer, and on the emulator.
// Fragments (PTX ISA, mma.m16n8k16 .bf16; g = lane / 4, t = lane % 4): A (16 x 16, row-major) a[0] = A[g][2t, 2t+1],
//   a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]; B (16 x 8) b[0] = B[2t, 2t+1][g],
//   b[1] = B[2t+8, 2t+9][g]; C (16 x 8, fp32) c[0], c[1] = C[g][2t, 2t+1], c[2], c[3] = C[g+8][2t, 2t+1]. The lower
//   column of a pair is the low half of its 32-bit register. S = Q·K^T takes K rows as B columns; the S accumulators of
//   two adjacent 8-key blocks are, element for element, the A fragment of P for the P·V product over those 16 keys.
// Emulator: e3_mma_bf16_16x8x16 (common.cuh) computes the instruction's result from the same fragments, so the kernel's
//   fragment bookkeeping runs and is tested on the CPU; only the instruction itself differs on a GPU.
#define E3_MMA_ROWS 64
#define E3_MMA_KEYS 64
#define E3_MMA_D 128
#define E3_MMA_STRIDE (E3_MMA_D + 8)

extern "C" __global__ void e3_attention_prefill_mma_bf16(const e3_bf16* q, const e3_bf16* k_cache, const e3_bf16* v_cache, e3_bf16* o,
    float* stats, int tokens_per_sequence, int start_position, int capacity, int heads, int kv_heads, float scale)
{
    E3_DYNAMIC_SHARED(e3_vec16, mma_smem);
    e3_bf16* ks = reinterpret_cast<e3_bf16*>(mma_smem);
    e3_bf16* vs = ks + E3_MMA_KEYS * E3_MMA_STRIDE;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int g = lane >> 2;
    const int t = lane & 3;
    const e3_attn_prefill_block blk = e3_attn_prefill_block_here(E3_MMA_ROWS, tokens_per_sequence, start_position, capacity, heads, kv_heads, E3_MMA_D);
    const int h = blk.h, first = blk.first, rows = blk.rows, last_key = blk.last_key;
    const long long q_stride = blk.q_stride, kv_stride = blk.kv_stride, row0 = blk.row0, kv_offset = blk.kv_offset;

    // This lane's rows of the block, their absolute positions (the last key each may see), and whether they exist.
    const int r0 = 16 * warp + g;
    const int r1 = r0 + 8;
    const int pos0 = start_position + first + r0;
    const int pos1 = pos0 + 8;
    const bool warp_has_rows = 16 * warp < rows;
    const int warp_last = start_position + first + min(16 * warp + 15, rows - 1);

    unsigned qa[E3_MMA_D / 16][4];
    E3_ATTN_UNROLL
    for (int s = 0; s < E3_MMA_D / 16; ++s)
    {
        const e3_bf16* q0 = q + (row0 + r0) * q_stride + (long long)h * E3_MMA_D + 16 * s + 2 * t;
        const e3_bf16* q1 = q0 + 8 * q_stride;
        qa[s][0] = r0 < rows ? *reinterpret_cast<const unsigned*>(q0) : 0u;
        qa[s][1] = r1 < rows ? *reinterpret_cast<const unsigned*>(q1) : 0u;
        qa[s][2] = r0 < rows ? *reinterpret_cast<const unsigned*>(q0 + 8) : 0u;
        qa[s][3] = r1 < rows ? *reinterpret_cast<const unsigned*>(q1 + 8) : 0u;
    }
    float acc[E3_MMA_D / 8][4];
    E3_ATTN_UNROLL
    for (int n = 0; n < E3_MMA_D / 8; ++n)
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    float m0 = E3_NEG_INF, m1 = E3_NEG_INF; // running max of the scaled scores, rows r0 and r1
    float l0 = 0.0f, l1 = 0.0f;             // this lane's share of the running sums; the 4 lanes of a row add up at the end

    for (int tile = 0; tile <= last_key; tile += E3_MMA_KEYS)
    {
        __syncthreads(); // every warp is done with the previous tile
        for (int i = threadIdx.x; i < E3_MMA_KEYS * (E3_MMA_D / 8); i += blockDim.x)
        {
            const int j = i / (E3_MMA_D / 8);
            const int d = (i % (E3_MMA_D / 8)) * 8;
            e3_vec16 kv = {}, vv = {};
            if (tile + j <= last_key)
            {
                kv = e3_load16(k_cache + kv_offset + (long long)(tile + j) * kv_stride + d);
                vv = e3_load16(v_cache + kv_offset + (long long)(tile + j) * kv_stride + d);
            }
            e3_store16(ks + j * E3_MMA_STRIDE + d, kv);
            e3_store16(vs + j * E3_MMA_STRIDE + d, vv);
        }
        __syncthreads();
        if (!warp_has_rows || tile > warp_last)
            continue; // every key of this tile is in the future of this warp's rows (warp-uniform)

        // S = Q·K^T: 8 blocks of 8 keys, each over 8 steps of 16 columns.
        float s[E3_MMA_KEYS / 8][4];
        E3_ATTN_UNROLL
        for (int n = 0; n < E3_MMA_KEYS / 8; ++n)
        {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            const e3_bf16* krow = ks + (n * 8 + g) * E3_MMA_STRIDE + 2 * t;
            E3_ATTN_UNROLL
            for (int step = 0; step < E3_MMA_D / 16; ++step)
            {
                const unsigned bk[2] = {*reinterpret_cast<const unsigned*>(krow + 16 * step), *reinterpret_cast<const unsigned*>(krow + 16 * step + 8)};
                e3_mma_bf16_16x8x16(s[n], qa[step], bk);
            }
        }

        // Scale, causal mask, and the online softmax update of both rows.
        float max0 = E3_NEG_INF, max1 = E3_NEG_INF;
        E3_ATTN_UNROLL
        for (int n = 0; n < E3_MMA_KEYS / 8; ++n)
        {
            E3_ATTN_UNROLL
            for (int e = 0; e < 2; ++e)
            {
                const int key = tile + 8 * n + 2 * t + e;
                s[n][e] = key <= pos0 ? s[n][e] * scale : E3_NEG_INF;
                s[n][2 + e] = key <= pos1 ? s[n][2 + e] * scale : E3_NEG_INF;
                max0 = fmaxf(max0, s[n][e]);
                max1 = fmaxf(max1, s[n][2 + e]);
            }
        }
        max0 = fmaxf(max0, __shfl_xor_sync(E3_FULL_MASK, max0, 1));
        max0 = fmaxf(max0, __shfl_xor_sync(E3_FULL_MASK, max0, 2));
        max1 = fmaxf(max1, __shfl_xor_sync(E3_FULL_MASK, max1, 1));
        max1 = fmaxf(max1, __shfl_xor_sync(E3_FULL_MASK, max1, 2));
        const float new0 = fmaxf(m0, max0), new1 = fmaxf(m1, max1);
        // A row that has seen no key yet keeps -inf; subtracting 0 then keeps every exp a clean 0 instead of a NaN.
        const float base0 = new0 == E3_NEG_INF ? 0.0f : new0, base1 = new1 == E3_NEG_INF ? 0.0f : new1;
        const float alpha0 = expf(m0 - base0), alpha1 = expf(m1 - base1);
        m0 = new0;
        m1 = new1;
        float sum0 = 0.0f, sum1 = 0.0f;
        E3_ATTN_UNROLL
        for (int n = 0; n < E3_MMA_KEYS / 8; ++n)
        {
            E3_ATTN_UNROLL
            for (int e = 0; e < 2; ++e)
            {
                s[n][e] = expf(s[n][e] - base0);
                s[n][2 + e] = expf(s[n][2 + e] - base1);
                sum0 += s[n][e];
                sum1 += s[n][2 + e];
            }
        }
        l0 = l0 * alpha0 + sum0;
        l1 = l1 * alpha1 + sum1;
        E3_ATTN_UNROLL
        for (int n = 0; n < E3_MMA_D / 8; ++n)
        {
            acc[n][0] *= alpha0;
            acc[n][1] *= alpha0;
            acc[n][2] *= alpha1;
            acc[n][3] *= alpha1;
        }

        // O += P·V: 4 steps of 16 keys; P's A fragment is the S accumulators of key blocks 2j and 2j+1, rounded to bf16.
        E3_ATTN_UNROLL
        for (int j = 0; j < E3_MMA_KEYS / 16; ++j)
        {
            const unsigned pa[4] = {e3_pack_bf16x2(s[2 * j][0], s[2 * j][1]), e3_pack_bf16x2(s[2 * j][2], s[2 * j][3]),
                e3_pack_bf16x2(s[2 * j + 1][0], s[2 * j + 1][1]), e3_pack_bf16x2(s[2 * j + 1][2], s[2 * j + 1][3])};
            const e3_bf16* vcol = vs + (16 * j + 2 * t) * E3_MMA_STRIDE + g;
            E3_ATTN_UNROLL
            for (int n = 0; n < E3_MMA_D / 8; ++n)
            {
                const e3_bf16* v0 = vcol + 8 * n;
                const unsigned bv[2] = {(unsigned)v0[0] | ((unsigned)v0[E3_MMA_STRIDE] << 16),
                    (unsigned)v0[8 * E3_MMA_STRIDE] | ((unsigned)v0[9 * E3_MMA_STRIDE] << 16)};
                e3_mma_bf16_16x8x16(acc[n], pa, bv);
            }
        }
    }

    if (!warp_has_rows)
        return;
    l0 += __shfl_xor_sync(E3_FULL_MASK, l0, 1);
    l0 += __shfl_xor_sync(E3_FULL_MASK, l0, 2);
    l1 += __shfl_xor_sync(E3_FULL_MASK, l1, 1);
    l1 += __shfl_xor_sync(E3_FULL_MASK, l1, 2);
    const float inverse0 = 1.0f / l0, inverse1 = 1.0f / l1;
    e3_bf16* out0 = o + (row0 + r0) * q_stride + (long long)h * E3_MMA_D + 2 * t;
    e3_bf16* out1 = out0 + 8 * q_stride;
    E3_ATTN_UNROLL
    for (int n = 0; n < E3_MMA_D / 8; ++n)
    {
        if (r0 < rows)
            *reinterpret_cast<unsigned*>(out0 + 8 * n) = e3_pack_bf16x2(acc[n][0] * inverse0, acc[n][1] * inverse0);
        if (r1 < rows)
            *reinterpret_cast<unsigned*>(out1 + 8 * n) = e3_pack_bf16x2(acc[n][2] * inverse1, acc[n][3] * inverse1);
    }
    if (stats != 0 && t == 0)
    {
        if (r0 < rows)
            e3_attn_store_stats(stats, (row0 + r0) * heads + h, m0, l0, 0);
        if (r1 < rows)
            e3_attn_store_stats(stats, (row0 + r1) * heads + h, m1, l1, 0);
    }
}
