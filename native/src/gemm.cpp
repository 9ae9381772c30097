// cublasGemmEx / cublasGemmStridedBatchedEx on the CPU: column-major, fp32 accumulation; with compute type
// 32F_FAST_TF32 the fp32 operands are first rounded to TF32, as the tensor cores take them.
// op(A) is packed once per batch into a dense fp32 m x k panel, then each column of C is accumulated
// as a sum of scaled panel columns (a saxpy the compiler vectorises). Columns are spread over the workers.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "runtime.hpp"

namespace e3emu {
namespace {

float bf16_to_float(std::uint16_t bits) {
    const std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
    float value;
    std::memcpy(&value, &wide, sizeof value);
    return value;
}

// Round to nearest even, NaN stays NaN (quiet), as cuBLAS's bf16 output does.
std::uint16_t float_to_bf16(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return static_cast<std::uint16_t>(bits >> 16);
}

float fp16_to_float(std::uint16_t half) {
    const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
    const std::uint32_t exponent = (half >> 10) & 0x1fu;
    std::uint32_t mantissa = half & 0x3ffu;
    std::uint32_t bits;
    if (exponent == 0x1f) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        // Subnormal: shift the leading one up to the implicit position.
        int e = -1;
        do {
            ++e;
            mantissa <<= 1;
        } while ((mantissa & 0x400u) == 0);
        bits = sign | static_cast<std::uint32_t>(112 - e) << 23 | ((mantissa & 0x3ffu) << 13);
    }
    float value;
    std::memcpy(&value, &bits, sizeof value);
    return value;
}

float load(const void* base, e3emu_dtype type, std::size_t index) {
    switch (type) {
    case E3EMU_R_32F: return static_cast<const float*>(base)[index];
    case E3EMU_R_16BF: return bf16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    case E3EMU_R_16F: return fp16_to_float(static_cast<const std::uint16_t*>(base)[index]);
    }
    return 0.0f;
}

// TF32 keeps fp32's exponent and the top 10 of its 23 mantissa bits. Round to nearest, ties away from zero (the
// rounding of cvt.rna.tf32.f32); infinities and NaN pass unchanged.
float to_tf32(float value) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7f800000u) == 0x7f800000u) return value;
    bits = (bits + 0x1000u) & 0xffffe000u;
    float rounded;
    std::memcpy(&rounded, &bits, sizeof rounded);
    return rounded;
}

bool is_input_type(e3emu_dtype t) { return t == E3EMU_R_32F || t == E3EMU_R_16BF || t == E3EMU_R_16F; }
bool is_output_type(e3emu_dtype t) { return t == E3EMU_R_32F || t == E3EMU_R_16BF; }
bool is_op(e3emu_op op) { return op == E3EMU_OP_N || op == E3EMU_OP_T; }

struct GemmArgs {
    e3emu_op transa, transb;
    int m, n, k;
    float alpha, beta;
    const void* a;
    e3emu_dtype a_type;
    int lda;
    long long stride_a;
    const void* b;
    e3emu_dtype b_type;
    int ldb;
    long long stride_b;
    void* c;
    e3emu_dtype c_type;
    int ldc;
    long long stride_c;
    int batch_count;
    e3emu_compute compute;
};

e3emu_result validate(const char* call, const GemmArgs& g) {
    auto bad = [&](const std::string& what) { return fail(E3EMU_ERROR_INVALID_VALUE, std::string(call) + ": " + what); };
    if (!pool()) return fail(E3EMU_ERROR_NOT_INITIALIZED, std::string(call) + ": call e3emu_init first");
    if (!is_op(g.transa) || !is_op(g.transb)) return bad("transa/transb must be N (0) or T (1)");
    if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch_count < 0)
        return bad("negative size m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
                   " batch=" + std::to_string(g.batch_count));
    if (!is_input_type(g.a_type) || !is_input_type(g.b_type))
        return fail(E3EMU_ERROR_NOT_SUPPORTED, std::string(call) + ": A/B type must be 32F, 16F or 16BF");
    if (!is_output_type(g.c_type)) return fail(E3EMU_ERROR_NOT_SUPPORTED, std::string(call) + ": C type must be 32F or 16BF");
    if (g.compute != E3EMU_COMPUTE_32F && g.compute != E3EMU_COMPUTE_32F_FAST_TF32)
        return fail(E3EMU_ERROR_NOT_SUPPORTED, std::string(call) + ": compute type must be 32F (68) or 32F_FAST_TF32 (77), not " +
                                                   std::to_string(static_cast<int>(g.compute)));
    if (g.compute == E3EMU_COMPUTE_32F_FAST_TF32 && (g.a_type != E3EMU_R_32F || g.b_type != E3EMU_R_32F || g.c_type != E3EMU_R_32F))
        return fail(E3EMU_ERROR_NOT_SUPPORTED, std::string(call) + ": 32F_FAST_TF32 needs fp32 A, B and C");
    const int a_rows = g.transa == E3EMU_OP_N ? g.m : g.k;
    const int b_rows = g.transb == E3EMU_OP_N ? g.k : g.n;
    if (g.lda < std::max(1, a_rows)) return bad("lda " + std::to_string(g.lda) + " < " + std::to_string(std::max(1, a_rows)));
    if (g.ldb < std::max(1, b_rows)) return bad("ldb " + std::to_string(g.ldb) + " < " + std::to_string(std::max(1, b_rows)));
    if (g.ldc < std::max(1, g.m)) return bad("ldc " + std::to_string(g.ldc) + " < " + std::to_string(std::max(1, g.m)));
    if (g.m && g.n && (!g.c || (g.k && (!g.a || !g.b)))) return bad("null matrix pointer");
    return E3EMU_SUCCESS;
}

std::size_t element_size(e3emu_dtype t) { return t == E3EMU_R_32F ? 4 : 2; }

const void* offset(const void* base, e3emu_dtype t, long long elements) {
    return static_cast<const char*>(base) + static_cast<std::ptrdiff_t>(elements) * static_cast<std::ptrdiff_t>(element_size(t));
}

void run_gemm(const GemmArgs& g) {
    if (g.m == 0 || g.n == 0 || g.batch_count == 0) return;
    const std::size_t m = static_cast<std::size_t>(g.m), k = static_cast<std::size_t>(g.k);
    std::vector<float> panel(m * k); // op(A), column-major m x k, dense
    const bool tf32 = g.compute == E3EMU_COMPUTE_32F_FAST_TF32;
    auto operand = [tf32](float v) { return tf32 ? to_tf32(v) : v; };
    for (int batch = 0; batch < g.batch_count; ++batch) {
        const void* a = offset(g.a, g.a_type, g.stride_a * batch);
        const void* b = offset(g.b, g.b_type, g.stride_b * batch);
        void* c = const_cast<void*>(offset(g.c, g.c_type, g.stride_c * batch));
        for (std::size_t p = 0; p < k; ++p)
            for (std::size_t i = 0; i < m; ++i)
                panel[i + p * m] = operand(g.transa == E3EMU_OP_N ? load(a, g.a_type, i + p * static_cast<std::size_t>(g.lda))
                                                                  : load(a, g.a_type, p + i * static_cast<std::size_t>(g.lda)));
        pool()->parallel_for(static_cast<std::size_t>(g.n), [&](std::size_t j, unsigned) {
            std::vector<float> column(m, 0.0f);
            for (std::size_t p = 0; p < k; ++p) {
                const float bpj = operand(g.transb == E3EMU_OP_N ? load(b, g.b_type, p + j * static_cast<std::size_t>(g.ldb))
                                                                 : load(b, g.b_type, j + p * static_cast<std::size_t>(g.ldb)));
                const float* a_column = &panel[p * m];
                for (std::size_t i = 0; i < m; ++i) column[i] += a_column[i] * bpj;
            }
            const std::size_t c_offset = j * static_cast<std::size_t>(g.ldc);
            for (std::size_t i = 0; i < m; ++i) {
                float value = g.alpha * column[i];
                // cuBLAS never reads C when beta is zero, so NaN/garbage in C does not leak through.
                if (g.beta != 0.0f) value += g.beta * load(c, g.c_type, c_offset + i);
                if (g.c_type == E3EMU_R_32F) static_cast<float*>(c)[c_offset + i] = value;
                else static_cast<std::uint16_t*>(c)[c_offset + i] = float_to_bf16(value);
            }
        });
    }
}

e3emu_result gemm(const char* call, const GemmArgs& g) {
    if (auto r = validate(call, g)) return r;
    try {
        run_gemm(g);
    } catch (const std::bad_alloc&) {
        return fail(E3EMU_ERROR_OUT_OF_MEMORY, std::string(call) + ": out of memory for the packed A panel");
    }
    return succeed();
}

} // namespace
} // namespace e3emu

using namespace e3emu;

extern "C" {

e3emu_result e3emu_gemm_ex(e3emu_op transa, e3emu_op transb, int m, int n, int k, float alpha, const void* a,
                           e3emu_dtype a_type, int lda, const void* b, e3emu_dtype b_type, int ldb, float beta, void* c,
                           e3emu_dtype c_type, int ldc, e3emu_compute compute) {
    return gemm("e3emu_gemm_ex",
                GemmArgs{transa, transb, m, n, k, alpha, beta, a, a_type, lda, 0, b, b_type, ldb, 0, c, c_type, ldc, 0, 1, compute});
}

e3emu_result e3emu_gemm_strided_batched_ex(e3emu_op transa, e3emu_op transb, int m, int n, int k, float alpha,
                                           const void* a, e3emu_dtype a_type, int lda, long long stride_a, const void* b,
                                           e3emu_dtype b_type, int ldb, long long stride_b, float beta, void* c,
                                           e3emu_dtype c_type, int ldc, long long stride_c, int batch_count,
                                           e3emu_compute compute) {
    return gemm("e3emu_gemm_strided_batched_ex",
                GemmArgs{transa, transb, m, n, k, alpha, beta, a, a_type, lda, stride_a, b, b_type, ldb, stride_b, c,
                         c_type, ldc, stride_c, batch_count, compute});
}

} // extern "C"
