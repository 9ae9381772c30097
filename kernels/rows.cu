// rows.cu: whole-row copies of row-major matrices.
//
// Math:  gather:     dst[i, :] = src[rows[i], :]   for i < count (rows already checked against src on the host).
//        broadcast:  y[r, :] = bias[:]               for r < rows (seeds a GEMM's C so that beta = 1 adds the bias
//                                                    in the GEMM epilogue, rounding once as torch's addmm does).
//        column sum: sum[c] += sum_r x[r, c] in row order, one thread per column (bias and norm-weight gradients,
//                    deterministic).
// Memory traffic per call: column sum reads rows*width*4 bytes and updates width*4; gather reads and writes count*width*E bytes (+4*count for the indices); broadcast
//   writes rows*width*E bytes and re-reads the width*E bias per row (from L2).
// Launch shape: grid = (count or rows), block = (256); one block per row, threads stride the row.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void e3_rows_copy(const T* src, T* dst, int width)
{
    for (int c = threadIdx.x; c < width; c += blockDim.x)
        dst[c] = src[c];
}

extern "C" __global__ void e3_gather_rows_f32(const float* src, const int* rows, float* dst, int count, int width)
{
    const int i = blockIdx.x;
    if (i >= count)
        return;
    e3_rows_copy(src + (long long)rows[i] * width, dst + (long long)i * width, width);
}

extern "C" __global__ void e3_gather_rows_bf16(const e3_bf16* src, const int* rows, e3_bf16* dst, int count, int width)
{
    const int i = blockIdx.x;
    if (i >= count)
        return;
    e3_rows_copy(src + (long long)rows[i] * width, dst + (long long)i * width, width);
}

extern "C" __global__ void e3_broadcast_row_f32(const float* bias, float* y, int rows, int width)
{
    const int r = blockIdx.x;
    if (r >= rows)
        return;
    e3_rows_copy(bias, y + (long long)r * width, width);
}

extern "C" __global__ void e3_broadcast_row_bf16(const e3_bf16* bias, e3_bf16* y, int rows, int width)
{
    const int r = blockIdx.x;
    if (r >= rows)
        return;
    e3_rows_copy(bias, y + (long long)r * width, width);
}

// sum[c] += sum over r < rows of x[r, c], rows added in order by one thread per column: the deterministic reduction
// behind bias gradients and the norm-weight gradients (whose per-row terms the backward kernels write to x).
// Launch: grid-stride over columns, block 256 (consecutive threads read consecutive columns of a row).
extern "C" __global__ void e3_column_sum_f32(const float* x, float* sum, int rows, int width)
{
    const int stride = gridDim.x * blockDim.x;
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < width; c += stride)
    {
        float acc = sum[c];
        for (int r = 0; r < rows; ++r)
            acc += x[(long long)r * width + c];
        sum[c] = acc;
    }
}
