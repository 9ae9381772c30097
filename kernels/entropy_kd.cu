// entropy_kd.cu: entropy-weighted KL distillation, loss and gradient in one pass over each student row.
//
// Math (row t, common vocabulary V, k = 1/tau): a = z_t*k, b = z_s*k, p = softmax(a), q = softmax(b).
//   Teacher pass: tMax = max z_t, tLogSum = log sum e^{(z_t - tMax)k}, H = tLogSum - sum e^u u / S  (u = (z_t - tMax)k).
//   Forward KL(p||q) = -H - sum p (b - bMax) + log S_b;   dKL/dz_s = k (q - p).
//   Reverse KL(q||p) = sum q (log q - log p);              dKL/dz_s = k q (log q - log p - KL).
//   Sparse teacher: K+1 buckets (the K indices and one tail with the rest of the mass, on both sides), tempered
//   on the host (bucket_logp); tail columns get k*c*f*q_j with f = 1 - P_tail/Q_tail (forward) or
//   log Q_tail - log P_tail - KL (reverse); top-K columns the per-bucket formula. Q_tail is summed directly
//   over the non-top-K columns (no 1 - sum cancellation); tails are floored at 1e-30 inside logs and ratios.
//   grad = kd_coef[t] * dKL/dz_s + ce_coef * (softmax(z_s) - onehot(label)); kd_coef = lambda tau^2 w_t / N, from
//   the host, which computes the weights w_t from the entropies (they depend on every token).
//   labels[t]: >= 0 the CE target, -1 valid without CE, -2 an ignored token (zero gradient, no loss).
// Memory traffic per row (E bytes per logit): teacher pass reads z_t once (V*E); the dense student pass reads
//   z_s and z_t twice each and writes the gradient once over z_s: 5*V*E, or 3*V*4 + 2*V*2 for an fp32 student
//   against a bf16 teacher (e3_kd_dense_f32_bf16). Sparse: z_s twice, one write: 3*V*E.
//   Reductions are fp32 in registers (each thread's online max/sums) and shared memory (block merge).
//   Loads are 4 wide (one 16-byte load of fp32, one 8-byte load of bf16) when every row involved starts on that
//   alignment: thread t takes groups t, t + 256, ... of 4 columns, then the last vocab % 4 columns one by one; a
//   misaligned row (odd ld) is read one column at a time. Either way each column is visited by exactly one thread.
// Launch shape: grid = (rows), block = (256): one block per row, threads stride the row. No dynamic shared
//   memory; sparse K <= 64.
#include "common.cuh"

#define E3_KD_MAX_K 64

__device__ __forceinline__ void e3_kd_load4(const float* p, float out[4]) { e3_load_f32x4(p, out); }
__device__ __forceinline__ void e3_kd_load4(const e3_bf16* p, float out[4]) { e3_load_bf16x4(p, out); }
__device__ __forceinline__ bool e3_kd_aligned4(const float* p) { return ((unsigned long long)p & 15u) == 0; }
__device__ __forceinline__ bool e3_kd_aligned4(const e3_bf16* p) { return ((unsigned long long)p & 7u) == 0; }

// Calls visit(c, row[c]) for this thread's columns c < count (see the header for which columns those are).
template <typename T, typename F>
__device__ __forceinline__ void e3_kd_walk(const T* row, int count, F visit)
{
    const int vectors = e3_kd_aligned4(row) ? count >> 2 : 0;
    for (int v = threadIdx.x; v < vectors; v += blockDim.x)
    {
        float x[4];
        e3_kd_load4(row + 4 * v, x);
        for (int j = 0; j < 4; ++j)
            visit(4 * v + j, x[j]);
    }
    for (int c = 4 * vectors + threadIdx.x; c < count; c += blockDim.x)
        visit(c, e3_load_float(row + c));
}

// Calls visit(c, a[c], b[c]) for this thread's columns c < count; vector loads only when both rows are aligned. The
// two rows may differ in type (an fp32 student chunk against a bf16 teacher): a row of r*ld elements from an
// aligned base is aligned for either type exactly when r*ld % 4 == 0, so the columns each thread visits, and with
// them the order of its sums, do not depend on the teacher's type.
template <typename A, typename B, typename F>
__device__ __forceinline__ void e3_kd_walk2(const A* a, const B* b, int count, F visit)
{
    const int vectors = e3_kd_aligned4(a) && e3_kd_aligned4(b) ? count >> 2 : 0;
    for (int v = threadIdx.x; v < vectors; v += blockDim.x)
    {
        float x[4], y[4];
        e3_kd_load4(a + 4 * v, x);
        e3_kd_load4(b + 4 * v, y);
        for (int j = 0; j < 4; ++j)
            visit(4 * v + j, x[j], y[j]);
    }
    for (int c = 4 * vectors + threadIdx.x; c < count; c += blockDim.x)
        visit(c, e3_load_float(a + c), e3_load_float(b + c));
}

// Folds a thread's online state (max m, sum s = sum e^{(z-m)k}, shifted sum r = sum e^u (u - x)) into the block's
// max: every thread ends with sums relative to the same max.
__device__ __forceinline__ float e3_kd_rebase(float m, float k, float* s, float* r, float* s1, float* pz, float p, float* scratch)
{
    const float block_max = e3_block_max(m, scratch);
    if (m == E3_NEG_INF)
    {
        *s = 0.0f; *r = 0.0f; *s1 = 0.0f; *pz = 0.0f;
        return block_max;
    }
    const float delta = (block_max - m) * k;
    const float f = __expf(-delta);
    *r = f * (*r - delta * *s);
    *s = *s * f;
    *s1 = *s1 * __expf(m - block_max);
    *pz = *pz - (block_max - m) * p;
    return block_max;
}

template <typename T>
__device__ __forceinline__ void e3_kd_teacher_row(const T* zt, int vocab, float k, float* t_max, float* t_log_sum, float* entropy)
{
    E3_SHARED(float, scratch, [32]);
    float m = E3_NEG_INF, s = 0.0f, u = 0.0f;
    e3_kd_walk(zt, vocab, [&](int, float z)
    {
        if (z > m)
        {
            // New running max: rescale (S' = e^{-d}S, U' = e^{-d}(U - dS)).
            if (m != E3_NEG_INF)
            {
                const float d = (z - m) * k;
                const float f = __expf(-d);
                u = f * (u - d * s);
                s *= f;
            }
            m = z;
        }
        const float x = (z - m) * k;
        const float e = __expf(x);
        s += e;
        u += e * x;
    });
    float unused1 = 0.0f, unused2 = 0.0f;
    const float block_max = e3_kd_rebase(m, k, &s, &u, &unused1, &unused2, 0.0f, scratch);
    s = e3_block_sum(s, scratch);
    u = e3_block_sum(u, scratch);
    if (threadIdx.x == 0)
    {
        const float log_sum = logf(s);
        *t_max = block_max;
        *t_log_sum = log_sum;
        *entropy = fmaxf(0.0f, log_sum - u / s);
    }
}

template <typename T, typename TT>
__device__ __forceinline__ void e3_kd_dense_row(T* zs, int student_vocab, const TT* zt, int vocab, float t_max, float t_log_sum,
    float entropy, float kd_coef, int label, float ce_coef, float k, int reverse, float* row_kl, float* row_ce)
{
    E3_SHARED(float, scratch, [32]);
    if (label == -2)
    {
        for (int c = threadIdx.x; c < student_vocab; c += blockDim.x) e3_store_float(zs + c, 0.0f);
        if (threadIdx.x == 0) { *row_kl = 0.0f; *row_ce = 0.0f; }
        return;
    }
    const float z_label = label >= 0 ? e3_load_float(zs + label) : 0.0f; // read before anyone overwrites it
    // Pass 1 (online): s = sum e^{(z-m)k}, s1 = sum e^{z-m}; forward: p = sum p_j, pz = sum p_j (z_j - m);
    // reverse: r = sum e^u (u - v), u = (z-m)k, v = (z_t - tMax)k.
    float m = E3_NEG_INF, s = 0.0f, s1 = 0.0f, r = 0.0f, p = 0.0f, pz = 0.0f;
    e3_kd_walk2((const T*)zs, zt, vocab, [&](int, float z, float z_teacher)
    {
        const float v = (z_teacher - t_max) * k;
        if (z > m)
        {
            if (m != E3_NEG_INF)
            {
                const float d = (z - m) * k;
                const float f = __expf(-d);
                r = f * (r - d * s);
                s *= f;
                s1 *= __expf(m - z);
                pz -= (z - m) * p;
            }
            m = z;
        }
        const float x = (z - m) * k;
        const float e = __expf(x);
        s += e;
        s1 += __expf(z - m);
        if (reverse)
            r += e * (x - v);
        else
        {
            const float pj = __expf(v - t_log_sum);
            p += pj;
            pz += pj * (z - m);
        }
    });
    const float block_max = e3_kd_rebase(m, k, &s, &r, &s1, &pz, p, scratch);
    s = e3_block_sum(s, scratch);
    s1 = e3_block_sum(s1, scratch);
    r = e3_block_sum(r, scratch);
    p = e3_block_sum(p, scratch);
    pz = e3_block_sum(pz, scratch);
    const float log_s = logf(s);
    const float log_s1 = logf(s1);
    const float kl = reverse ? r / s - log_s + t_log_sum : -entropy - k * pz + p * log_s;
    // Pass 2: the gradient, written once.
    const float c0 = kd_coef * k;
    const float ce = label >= 0 ? ce_coef : 0.0f;
    // Each column is loaded and stored by the same thread, so overwriting zs in place is safe.
    e3_kd_walk2((const T*)zs, zt, vocab, [&](int c, float z, float z_teacher)
    {
        const float d = z - block_max;
        const float u = d * k - log_s;
        const float v = (z_teacher - t_max) * k - t_log_sum;
        const float q = __expf(u);
        float g = reverse ? c0 * q * (u - v - kl) : c0 * (q - __expf(v));
        g += ce * (__expf(d - log_s1) - (c == label ? 1.0f : 0.0f));
        e3_store_float(zs + c, g);
    });
    for (int c = vocab + threadIdx.x; c < student_vocab; c += blockDim.x) e3_store_float(zs + c, 0.0f);
    if (threadIdx.x == 0)
    {
        *row_kl = kl;
        *row_ce = label >= 0 ? log_s1 - (z_label - block_max) : 0.0f;
    }
}

template <typename T>
__device__ __forceinline__ void e3_kd_sparse_row(T* zs, int student_vocab, int vocab, const int* indices, const float* logp, int top_k,
    float kd_coef, int label, float ce_coef, float k, int reverse, float* row_kl, float* row_ce)
{
    E3_SHARED(float, scratch, [32]);
    E3_SHARED(int, top_index, [E3_KD_MAX_K]);
    E3_SHARED(float, top_z, [E3_KD_MAX_K]);
    if (label == -2)
    {
        for (int c = threadIdx.x; c < student_vocab; c += blockDim.x) e3_store_float(zs + c, 0.0f);
        if (threadIdx.x == 0) { *row_kl = 0.0f; *row_ce = 0.0f; }
        return;
    }
    for (int i = threadIdx.x; i < top_k; i += blockDim.x)
    {
        top_index[i] = indices[i];
        top_z[i] = e3_load_float(zs + indices[i]);
    }
    const float z_label = label >= 0 ? e3_load_float(zs + label) : 0.0f;
    __syncthreads();
    // Pass 1 over the tail columns only.
    float m = E3_NEG_INF, s = 0.0f, s1 = 0.0f;
    e3_kd_walk((const T*)zs, vocab, [&](int c, float z)
    {
        bool top = false;
        for (int i = 0; i < top_k; ++i) top |= top_index[i] == c;
        if (top) return;
        if (z > m)
        {
            if (m != E3_NEG_INF)
            {
                s *= __expf((m - z) * k);
                s1 *= __expf(m - z);
            }
            m = z;
        }
        s += __expf((z - m) * k);
        s1 += __expf(z - m);
    });
    float unused_r = 0.0f, unused_pz = 0.0f;
    float row_max = e3_kd_rebase(m, k, &s, &unused_r, &s1, &unused_pz, 0.0f, scratch);
    float tail = e3_block_sum(s, scratch);
    float tail1 = e3_block_sum(s1, scratch);
    // Every thread folds in the top-K columns the same way, so all hold identical scalars.
    float mx = row_max;
    for (int i = 0; i < top_k; ++i) mx = fmaxf(mx, top_z[i]);
    if (row_max != E3_NEG_INF)
    {
        tail *= __expf((row_max - mx) * k);
        tail1 *= __expf(row_max - mx);
    }
    float top = 0.0f, top1 = 0.0f;
    for (int i = 0; i < top_k; ++i)
    {
        top += __expf((top_z[i] - mx) * k);
        top1 += __expf(top_z[i] - mx);
    }
    const float log_s = logf(tail + top);
    const float log_s1 = logf(tail1 + top1);
    const float q_tail = tail / (tail + top);
    const float floor_ = 1e-30f;
    const float log_q_tail = logf(fmaxf(q_tail, floor_));
    const float p_tail = __expf(logp[top_k]);
    const float log_p_tail = fmaxf(logp[top_k], logf(floor_));
    float kl = 0.0f;
    for (int i = 0; i < top_k; ++i)
    {
        const float log_q = (top_z[i] - mx) * k - log_s;
        kl += reverse ? __expf(log_q) * (log_q - logp[i]) : __expf(logp[i]) * (logp[i] - log_q);
    }
    if (reverse && q_tail > 0.0f) kl += q_tail * (log_q_tail - log_p_tail);
    if (!reverse && p_tail > 0.0f) kl += p_tail * (log_p_tail - log_q_tail);
    // Pass 2.
    const float c0 = kd_coef * k;
    const float f = reverse ? log_q_tail - log_p_tail - kl : 1.0f - p_tail / fmaxf(q_tail, floor_);
    const float ce = label >= 0 ? ce_coef : 0.0f;
    e3_kd_walk((const T*)zs, vocab, [&](int c, float z)
    {
        int slot = -1;
        for (int i = 0; i < top_k; ++i) slot = top_index[i] == c ? i : slot;
        const float d = (slot >= 0 ? top_z[slot] : z) - mx;
        const float log_q = d * k - log_s;
        const float q = __expf(log_q);
        float g;
        if (slot < 0) g = c0 * f * q;
        else g = reverse ? c0 * q * (log_q - logp[slot] - kl) : c0 * (q - __expf(logp[slot]));
        g += ce * (__expf(d - log_s1) - (c == label ? 1.0f : 0.0f));
        e3_store_float(zs + c, g);
    });
    for (int c = vocab + threadIdx.x; c < student_vocab; c += blockDim.x) e3_store_float(zs + c, 0.0f);
    if (threadIdx.x == 0)
    {
        *row_kl = kl;
        *row_ce = label >= 0 ? log_s1 - (z_label - mx) : 0.0f;
    }
}

extern "C" __global__ void e3_kd_teacher_f32(const float* zt, int ld_t, int rows, int vocab, float inv_tau, float* t_max, float* t_log_sum, float* entropy)
{
    const int row = blockIdx.x;
    if (row >= rows) return;
    e3_kd_teacher_row(zt + (long long)row * ld_t, vocab, inv_tau, t_max + row, t_log_sum + row, entropy + row);
}

extern "C" __global__ void e3_kd_teacher_bf16(const e3_bf16* zt, int ld_t, int rows, int vocab, float inv_tau, float* t_max, float* t_log_sum, float* entropy)
{
    const int row = blockIdx.x;
    if (row >= rows) return;
    e3_kd_teacher_row(zt + (long long)row * ld_t, vocab, inv_tau, t_max + row, t_log_sum + row, entropy + row);
}

// This block's row of a dense student pass; the kernels below differ only in the student's and teacher's types.
template <typename T, typename TT>
__device__ __forceinline__ void e3_kd_dense_block(T* zs, int ld_s, const TT* zt, int ld_t, int rows, int vocab, const float* t_max,
    const float* t_log_sum, const float* entropy, const float* kd_coef, const int* labels, float ce_coef, float inv_tau, int reverse,
    float* row_kl, float* row_ce)
{
    const int row = blockIdx.x;
    if (row >= rows) return;
    e3_kd_dense_row(zs + (long long)row * ld_s, ld_s, zt + (long long)row * ld_t, vocab, t_max[row], t_log_sum[row], entropy[row],
        kd_coef[row], labels[row], ce_coef, inv_tau, reverse, row_kl + row, row_ce + row);
}

extern "C" __global__ void e3_kd_dense_f32(float* zs, int ld_s, const float* zt, int ld_t, int rows, int vocab, const float* t_max, const float* t_log_sum, const float* entropy, const float* kd_coef, const int* labels, float ce_coef, float inv_tau, int reverse, float* row_kl, float* row_ce)
{
    e3_kd_dense_block(zs, ld_s, zt, ld_t, rows, vocab, t_max, t_log_sum, entropy, kd_coef, labels, ce_coef, inv_tau, reverse, row_kl, row_ce);
}

extern "C" __global__ void e3_kd_dense_bf16(e3_bf16* zs, int ld_s, const e3_bf16* zt, int ld_t, int rows, int vocab, const float* t_max, const float* t_log_sum, const float* entropy, const float* kd_coef, const int* labels, float ce_coef, float inv_tau, int reverse, float* row_kl, float* row_ce)
{
    e3_kd_dense_block(zs, ld_s, zt, ld_t, rows, vocab, t_max, t_log_sum, entropy, kd_coef, labels, ce_coef, inv_tau, reverse, row_kl, row_ce);
}

// The fp32 chunk of a trainer's logits against a teacher that ran the bf16 inference path.
extern "C" __global__ void e3_kd_dense_f32_bf16(float* zs, int ld_s, const e3_bf16* zt, int ld_t, int rows, int vocab, const float* t_max, const float* t_log_sum, const float* entropy, const float* kd_coef, const int* labels, float ce_coef, float inv_tau, int reverse, float* row_kl, float* row_ce)
{
    e3_kd_dense_block(zs, ld_s, zt, ld_t, rows, vocab, t_max, t_log_sum, entropy, kd_coef, labels, ce_coef, inv_tau, reverse, row_kl, row_ce);
}

extern "C" __global__ void e3_kd_sparse_f32(float* zs, int ld_s, int rows, int vocab, const int* indices, const float* bucket_logp, int top_k, const float* kd_coef, const int* labels, float ce_coef, float inv_tau, int reverse, float* row_kl, float* row_ce)
{
    const int row = blockIdx.x;
    if (row >= rows) return;
    e3_kd_sparse_row(zs + (long long)row * ld_s, ld_s, vocab, indices + (long long)row * top_k, bucket_logp + (long long)row * (top_k + 1), top_k,
        kd_coef[row], labels[row], ce_coef, inv_tau, reverse, row_kl + row, row_ce + row);
}

extern "C" __global__ void e3_kd_sparse_bf16(e3_bf16* zs, int ld_s, int rows, int vocab, const int* indices, const float* bucket_logp, int top_k, const float* kd_coef, const int* labels, float ce_coef, float inv_tau, int reverse, float* row_kl, float* row_ce)
{
    const int row = blockIdx.x;
    if (row >= rows) return;
    e3_kd_sparse_row(zs + (long long)row * ld_s, ld_s, vocab, indices + (long long)row * top_k, bucket_logp + (long long)row * (top_k + 1), top_k,
        kd_coef[row], labels[row], ce_coef, inv_tau, reverse, row_kl + row, row_ce + row);
}
