// rmsnorm.cu: RMSNorm over the last dimension, plain and fused with the residual update.
//
// Math (one row x of length n, weight w):   r = rsqrt(mean(x^2) + eps);   y = w * (x * r)
//   bf16 rows round like the Hugging Face modules: y = bf16(w * bf16(x * r)), all sums in fp32.
//   Gated:   h = h + gate * ((a + m) - h) as residual.cu computes it;   y = rmsnorm(h) * w   (a layer's end fused
//            with the next kept layer's input norm).
//   Add:     sum = x + delta (rounded to the dtype);   y = rmsnorm(sum) * w   (sum may be x).
//   Backward (fp32): dx = r * (w*dy) - x * r^3 / n * sum(w*dy*x);   dw += dy * x * r.
//     e3_rmsnorm_backward_f32 adds dw with atomicAdd across rows (not bit-deterministic; kept for the kernel tests);
//     e3_rmsnorm_backward_rows_f32 (the training backend's) can add into dx, and stores each row's dw terms in a
//     [rows, n] buffer that rows.cu's e3_column_sum_f32 adds up in row order (deterministic, no atomics).
// Memory traffic per call (elements, E bytes each): forward reads x + w per row and writes y: 3*rows*n*E
//   (w is re-read per row from L2); add reads delta and writes sum too: 5*rows*n*E; gated reads h, a, m, w and writes
//   h, y: 6*rows*n*E (5 when gate == 1: h is not read); backward reads x, w, dy
//   and writes dx, atomically adds dw: ~5*rows*n*4.
// Launch shape: grid = (rows), block = (256) — any multiple of 32 up to 1024 works; one block per row,
//   threads stride the row. No dynamic shared memory. dw must be zeroed before the backward kernel.
//   The bf16 forward kernels stride by 8 elements (16-byte accesses) when cols is a multiple of 8 and every pointer
//   is 16-byte aligned; each element is computed as on the scalar path, only the sum of squares is added in another
//   order.
#include "common.cuh"

__device__ __forceinline__ float e3_row_inverse_rms(const float* x, int cols, float eps, float* scratch)
{
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        sum += x[c] * x[c];
    return rsqrtf(e3_block_sum(sum, scratch) / (float)cols + eps);
}

__device__ __forceinline__ float e3_row_inverse_rms_bf16(const e3_bf16* x, int cols, float eps, float* scratch)
{
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        const float v = e3_bf16_to_float(x[c]);
        sum += v * v;
    }
    return rsqrtf(e3_block_sum(sum, scratch) / (float)cols + eps);
}

extern "C" __global__ void e3_rmsnorm_f32(const float* x, const float* weight, float* y, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const float* xr = x + (long long)row * cols;
    float* yr = y + (long long)row * cols;
    const float inv = e3_row_inverse_rms(xr, cols, eps, scratch);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        yr[c] = weight[c] * (xr[c] * inv);
}

// y = bf16(w * bf16(x * r)): Hugging Face's bf16 RMSNorm, one element and eight packed elements.
__device__ __forceinline__ e3_bf16 e3_rmsnorm_bf16_value(float x, float w, float inv)
{
    return e3_float_to_bf16(w * e3_round_bf16(x * inv));
}

__device__ __forceinline__ e3_vec16 e3_rmsnorm_bf16x8(const e3_vec16& x8, const e3_vec16& w8, float inv)
{
    return e3_vec16_map3([inv](float x, float w, float) { return e3_rmsnorm_bf16_value(x, w, inv); }, x8, w8, e3_vec16{});
}

extern "C" __global__ void e3_rmsnorm_bf16(const e3_bf16* x, const e3_bf16* weight, e3_bf16* y, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const e3_bf16* xr = x + (long long)row * cols;
    e3_bf16* yr = y + (long long)row * cols;
    if ((cols & 7) == 0 && e3_is_aligned16(x) && e3_is_aligned16(weight) && e3_is_aligned16(y))
    {
        float squares = 0.0f;
        for (int c = 8 * threadIdx.x; c < cols; c += 8 * blockDim.x)
        {
            const e3_vec16 x8 = e3_load16(xr + c);
            for (int j = 0; j < 8; ++j)
                squares += e3_vec16_bf16_at(x8, j) * e3_vec16_bf16_at(x8, j);
        }
        const float inv = rsqrtf(e3_block_sum(squares, scratch) / (float)cols + eps);
        for (int c = 8 * threadIdx.x; c < cols; c += 8 * blockDim.x)
            e3_store16(yr + c, e3_rmsnorm_bf16x8(e3_load16(xr + c), e3_load16(weight + c), inv));
        return;
    }
    const float inv = e3_row_inverse_rms_bf16(xr, cols, eps, scratch);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        yr[c] = e3_rmsnorm_bf16_value(e3_bf16_to_float(xr[c]), e3_bf16_to_float(weight[c]), inv);
}

// One row of a residual update fused with the RMSNorm of its result: update(c) gives the value column c is to hold
// (already rounded to T's precision), which is stored in out[c] and normalised: y = rmsnorm(out) * weight. Each
// thread reads and writes only the columns it later normalises, so out may alias an input of update, and the only
// cross-thread dependency is the block sum. The squares are added in the order e3_rmsnorm_* adds them, so y equals
// the unfused update followed by e3_rmsnorm_* bit for bit.
template <typename T, typename Update>
__device__ __forceinline__ void e3_update_rmsnorm_row(Update update, T* out, const T* weight, T* y, int cols, float eps, float* scratch)
{
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        const float v = update(c);
        e3_store_float(out + c, v);
        squares += v * v;
    }
    const float inv = rsqrtf(e3_block_sum(squares, scratch) / (float)cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        e3_store_float(y + c, e3_load_float(weight + c) * e3_as_stored(e3_load_float(out + c) * inv, y));
}

// The bf16 row through 16-byte accesses (cols a multiple of 8, every pointer 16-byte aligned): update8(c) gives the
// eight bf16 values columns c..c+7 are to hold.
template <typename Update8>
__device__ __forceinline__ void e3_update_rmsnorm_row_bf16x8(Update8 update8, e3_bf16* out, const e3_bf16* weight, e3_bf16* y, int cols, float eps, float* scratch)
{
    float squares = 0.0f;
    for (int c = 8 * threadIdx.x; c < cols; c += 8 * blockDim.x)
    {
        const e3_vec16 s8 = update8(c);
        for (int j = 0; j < 8; ++j)
            squares += e3_vec16_bf16_at(s8, j) * e3_vec16_bf16_at(s8, j);
        e3_store16(out + c, s8);
    }
    const float inv = rsqrtf(e3_block_sum(squares, scratch) / (float)cols + eps);
    for (int c = 8 * threadIdx.x; c < cols; c += 8 * blockDim.x)
        e3_store16(y + c, e3_rmsnorm_bf16x8(e3_load16(out + c), e3_load16(weight + c), inv));
}

// The end of one decoder layer fused with the input norm of the next kept one: h <- the gated residual
// (e3_gated_residual_value, common.cuh), then y = rmsnorm(h) * weight. h may alias a or m.
template <typename T>
__device__ __forceinline__ void e3_gated_residual_rmsnorm_row(T* h, const T* a, const T* m, float gate, const T* weight, T* y, int cols, float eps, float* scratch)
{
    e3_update_rmsnorm_row([=](int c) {
        // A gate-1 layer does not read h: it may hold anything, NaN included.
        const float old = gate == 1.0f ? 0.0f : e3_load_float(h + c);
        return e3_gated_residual_value(old, e3_load_float(a + c), e3_load_float(m + c), gate, h);
    }, h, weight, y, cols, eps, scratch);
}

extern "C" __global__ void e3_gated_residual_rmsnorm_f32(float* h, const float* a, const float* m, float gate, const float* weight, float* y, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const long long base = (long long)row * cols;
    e3_gated_residual_rmsnorm_row(h + base, a + base, m + base, gate, weight, y + base, cols, eps, scratch);
}

extern "C" __global__ void e3_gated_residual_rmsnorm_bf16(e3_bf16* h, const e3_bf16* a, const e3_bf16* m, float gate, const e3_bf16* weight, e3_bf16* y, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const long long base = (long long)row * cols;
    e3_bf16* hr = h + base;
    const e3_bf16* ar = a + base;
    const e3_bf16* mr = m + base;
    if ((cols & 7) == 0 && e3_is_aligned16(h) && e3_is_aligned16(a) && e3_is_aligned16(m) && e3_is_aligned16(weight) && e3_is_aligned16(y))
    {
        e3_update_rmsnorm_row_bf16x8([=](int c) {
            return e3_vec16_map3(e3_gated_residual_bf16_map{gate}, e3_load16(ar + c), e3_load16(mr + c), gate == 1.0f ? e3_vec16{} : e3_load16(hr + c));
        }, hr, weight, y + base, cols, eps, scratch);
        return;
    }
    e3_gated_residual_rmsnorm_row(hr, ar, mr, gate, weight, y + base, cols, eps, scratch);
}

// One row of sum = x + delta rounded to the dtype (torch adds two tensors), then y = rmsnorm(sum) * weight. sum may
// alias x.
template <typename T>
__device__ __forceinline__ void e3_add_rmsnorm_row(const T* x, const T* delta, T* sum, const T* weight, T* y, int cols, float eps, float* scratch)
{
    e3_update_rmsnorm_row([=](int c) { return e3_as_stored(e3_load_float(x + c) + e3_load_float(delta + c), sum); }, sum, weight, y, cols, eps, scratch);
}

// sum = x + delta, then y = rmsnorm(sum) * weight: a decoder layer's attention residual fused with its MLP norm.
extern "C" __global__ void e3_add_rmsnorm_f32(const float* x, const float* delta, float* sum, const float* weight, float* y, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const long long base = (long long)row * cols;
    e3_add_rmsnorm_row(x + base, delta + base, sum + base, weight, y + base, cols, eps, scratch);
}

extern "C" __global__ void e3_add_rmsnorm_bf16(const e3_bf16* x, const e3_bf16* delta, e3_bf16* sum, const e3_bf16* weight, e3_bf16* y, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const long long base = (long long)row * cols;
    const e3_bf16* xr = x + base;
    const e3_bf16* dr = delta + base;
    if ((cols & 7) == 0 && e3_is_aligned16(x) && e3_is_aligned16(delta) && e3_is_aligned16(sum) && e3_is_aligned16(weight) && e3_is_aligned16(y))
    {
        e3_update_rmsnorm_row_bf16x8([=](int c) {
            return e3_vec16_map3([](float x_value, float d_value, float) { return e3_float_to_bf16(x_value + d_value); },
                e3_load16(xr + c), e3_load16(dr + c), e3_vec16{});
        }, sum + base, weight, y + base, cols, eps, scratch);
        return;
    }
    e3_add_rmsnorm_row(xr, dr, sum + base, weight, y + base, cols, eps, scratch);
}

// One row of the backward: dx = r*w*dy - x*r^3/n*sum(w*dy*x), overwriting or adding to dx; each column's dy*x*r term
// goes to dw_atomic (atomicAdd) and/or dy_xhat (a plain store into this row's slot) when they are not null.
__device__ __forceinline__ void e3_rmsnorm_backward_row(const float* xr, const float* weight, const float* dyr, float* dxr, int accumulate,
    float* dw_atomic, float* dy_xhat, int cols, float eps, float* scratch)
{
    const float inv = e3_row_inverse_rms(xr, cols, eps, scratch);
    float dot = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        dot += weight[c] * dyr[c] * xr[c];
    dot = e3_block_sum(dot, scratch);
    const float coefficient = inv * inv * inv * dot / (float)cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
    {
        const float g = inv * weight[c] * dyr[c] - coefficient * xr[c];
        dxr[c] = accumulate ? dxr[c] + g : g;
        const float term = dyr[c] * xr[c] * inv;
        if (dw_atomic != 0)
            atomicAdd(&dw_atomic[c], term);
        if (dy_xhat != 0)
            dy_xhat[c] = term;
    }
}

// dx and dw for y = w * x * r. dweight accumulates over rows with atomicAdd and must start at zero.
extern "C" __global__ void e3_rmsnorm_backward_f32(const float* x, const float* weight, const float* dy, float* dx, float* dweight, int rows, int cols, float eps)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const long long base = (long long)row * cols;
    e3_rmsnorm_backward_row(x + base, weight, dy + base, dx + base, 0, dweight, 0, cols, eps, scratch);
}

// The deterministic form the training backend uses: dx overwritten or accumulated (accumulate != 0), and, when
// dy_xhat is not null, each row's weight-gradient terms stored in dy_xhat [rows, cols] for e3_column_sum_f32 to add
// up in row order (no atomics).
extern "C" __global__ void e3_rmsnorm_backward_rows_f32(const float* x, const float* weight, const float* dy, float* dx, float* dy_xhat, int rows, int cols, float eps, int accumulate)
{
    E3_SHARED(float, scratch, [32]);
    const int row = blockIdx.x;
    if (row >= rows)
        return;
    const long long base = (long long)row * cols;
    e3_rmsnorm_backward_row(x + base, weight, dy + base, dx + base, accumulate, 0, dy_xhat == 0 ? 0 : dy_xhat + base, cols, eps, scratch);
}
