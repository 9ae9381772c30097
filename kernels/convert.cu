// convert.cu: element dtype conversion between fp32 and bf16, on the device.
//
// Math: widen  dst_i = (float)src_i (exact: a bf16 is the top half of an fp32);
//       narrow dst_i = bf16(src_i), round to nearest, ties to even; a NaN stays a quiet NaN of the same sign
//       (e3_float_to_bf16, which the host's BFloat16.FromSingle matches bit for bit).
// Why on the device: the backend keeps an fp32 copy of a bf16 weight that an fp32 kernel or GEMM reads (training
//   computes in fp32), and training rewrites the weights every optimizer step; converting through the host would
//   move every weight across PCIe twice per step.
// Memory traffic per call: widen reads 2n and writes 4n bytes; narrow reads 4n and writes 2n.
// Launch shape: grid = (min(ceil(n / 2048), 65536)), block = (256); grid-stride loop over n, so any grid is correct.
//   8 elements a thread per iteration (one 16-byte bf16 access, two fp32 ones) when both pointers are 16-byte
//   aligned; element by element otherwise.
#include "common.cuh"

extern "C" __global__ void e3_convert_bf16_to_f32(const e3_bf16* src, float* dst, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long scalar_from = 0;
    if (e3_is_aligned16(src) && e3_is_aligned16(dst))
    {
        const long long vectors = n >> 3;
        for (long long v = first; v < vectors; v += stride)
        {
            const e3_vec16 s8 = e3_load16(src + 8 * v);
            e3_vec16 lo, hi;
            for (int j = 0; j < 4; ++j)
            {
                lo.word[j] = __float_as_uint(e3_vec16_bf16_at(s8, j));
                hi.word[j] = __float_as_uint(e3_vec16_bf16_at(s8, 4 + j));
            }
            e3_store16(dst + 8 * v, lo);
            e3_store16(dst + 8 * v + 4, hi);
        }
        scalar_from = vectors << 3;
    }
    for (long long i = scalar_from + first; i < n; i += stride)
        dst[i] = e3_bf16_to_float(src[i]);
}

extern "C" __global__ void e3_convert_f32_to_bf16(const float* src, e3_bf16* dst, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long scalar_from = 0;
    if (e3_is_aligned16(src) && e3_is_aligned16(dst))
    {
        const long long vectors = n >> 3;
        for (long long v = first; v < vectors; v += stride)
        {
            const e3_vec16 lo = e3_load16(src + 8 * v), hi = e3_load16(src + 8 * v + 4);
            e3_vec16 d8 = {};
            for (int j = 0; j < 4; ++j)
            {
                e3_vec16_set_bf16(d8, j, e3_float_to_bf16(__uint_as_float(lo.word[j])));
                e3_vec16_set_bf16(d8, 4 + j, e3_float_to_bf16(__uint_as_float(hi.word[j])));
            }
            e3_store16(dst + 8 * v, d8);
        }
        scalar_from = vectors << 3;
    }
    for (long long i = scalar_from + first; i < n; i += stride)
        dst[i] = e3_float_to_bf16(src[i]);
}
