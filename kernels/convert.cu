// convert.cu: element dtype conversion between fp32 and bf16, on the device.
//
// Math: widen  dst_i = (float)src_i (exact: a bf16 is the top half of an fp32);
//       narrow dst_i = bf16(src_i), round to nearest, ties to even; a NaN stays a quiet NaN of the same sign
//       (e3_float_to_bf16, which the host's BFloat16.FromSingle matches bit for bit).
// Why on the device: the backend keeps an fp32 copy of a bf16 weight that an fp32 kernel or GEMM reads (training
//   computes in fp32), and training rewrites the weights every optimizer step; converting through the host would
//   move every weight across PCIe twice per step.
// Memory traffic per call: widen reads 2n and writes 4n bytes; narrow reads 4n and writes 2n.
// Launch shape: grid = (min(ceil(n / 256), 65535 * 8)), block = (256); grid-stride loop over n.
#include "common.cuh"

extern "C" __global__ void e3_convert_bf16_to_f32(const e3_bf16* src, float* dst, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = e3_bf16_to_float(src[i]);
}

extern "C" __global__ void e3_convert_f32_to_bf16(const float* src, e3_bf16* dst, long long n)
{
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = e3_float_to_bf16(src[i]);
}
