// e3emu_gemm_ex / strided batched against a naive double-precision column-major reference.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdint>
#include <random>

#include "emu_test_support.hpp"

namespace {

std::uint16_t to_bf16(float v) { // round to nearest even; inputs here are finite
    std::uint32_t b;
    std::memcpy(&b, &v, 4);
    return static_cast<std::uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
float from_bf16(std::uint16_t h) {
    std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &b, 4);
    return v;
}
// Exact fp16 encoding of values k/64 with |k| < 1024 (normal range, 10-bit mantissa suffices).
std::uint16_t to_fp16_exact(float v) {
    if (v == 0.0f) return 0;
    std::uint16_t sign = v < 0 ? 0x8000 : 0;
    float a = std::fabs(v);
    int e = 0;
    float m = std::frexp(a, &e); // a = m * 2^e, m in [0.5, 1)
    const int exponent = e - 1 + 15;
    const int mantissa = static_cast<int>((m * 2.0f - 1.0f) * 1024.0f);
    return static_cast<std::uint16_t>(sign | exponent << 10 | mantissa);
}

struct Operand {
    e3emu_dtype type;
    std::vector<float> values;         // what the GEMM should see, already rounded to `type`
    std::vector<std::uint16_t> half;   // storage for 16-bit types
    const void* data() const { return type == E3EMU_R_32F ? static_cast<const void*>(values.data()) : half.data(); }
};

// Random stored matrix of `count` elements representable in `type` (multiples of 1/64 below 8 in magnitude).
Operand make_operand(e3emu_dtype type, std::size_t count, std::mt19937& rng) {
    std::uniform_int_distribution<int> k(-500, 500);
    Operand op{type, std::vector<float>(count), {}};
    for (float& v : op.values) v = k(rng) / 64.0f;
    if (type == E3EMU_R_16BF) {
        for (float& v : op.values) v = from_bf16(to_bf16(v));
        for (float v : op.values) op.half.push_back(to_bf16(v));
    } else if (type == E3EMU_R_16F) {
        for (float v : op.values) op.half.push_back(to_fp16_exact(v));
    }
    return op;
}

struct Case {
    e3emu_op ta, tb;
    e3emu_dtype ab_type, c_type;
};

class Gemm : public EmuTest, public ::testing::WithParamInterface<Case> {};

TEST_P(Gemm, MatchesNaiveColumnMajorReference) {
    const Case p = GetParam();
    const int m = 37, n = 29, k = 53, batches = 3;
    // Leading dimensions larger than the rows and batch strides with gaps exercise every index formula.
    const int a_rows = p.ta == E3EMU_OP_N ? m : k, a_cols = p.ta == E3EMU_OP_N ? k : m;
    const int b_rows = p.tb == E3EMU_OP_N ? k : n, b_cols = p.tb == E3EMU_OP_N ? n : k;
    const int lda = a_rows + 5, ldb = b_rows + 3, ldc = m + 7;
    const long long sa = 1ll * lda * a_cols + 11, sb = 1ll * ldb * b_cols + 13, sc = 1ll * ldc * n + 17;
    std::mt19937 rng(static_cast<unsigned>(p.ta * 8 + p.tb * 4 + p.ab_type + p.c_type));
    const Operand a = make_operand(p.ab_type, sa * batches, rng);
    const Operand b = make_operand(p.ab_type, sb * batches, rng);
    Operand c0 = make_operand(p.c_type, sc * batches, rng);
    const float alpha = 0.75f, beta = -1.5f;

    std::vector<float> c_f32 = c0.values;
    std::vector<std::uint16_t> c_bf16 = c0.half;
    void* c = p.c_type == E3EMU_R_32F ? static_cast<void*>(c_f32.data()) : c_bf16.data();
    E3EMU_CHECK(e3emu_gemm_strided_batched_ex(p.ta, p.tb, m, n, k, alpha, a.data(), p.ab_type, lda, sa, b.data(),
                                              p.ab_type, ldb, sb, beta, c, p.c_type, ldc, sc, batches, E3EMU_COMPUTE_32F));
    for (int batch = 0; batch < batches; ++batch)
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < m; ++i) {
                double acc = 0, magnitude = 0;
                for (int q = 0; q < k; ++q) {
                    const double av = p.ta == E3EMU_OP_N ? a.values[batch * sa + i + 1ll * q * lda]
                                                         : a.values[batch * sa + q + 1ll * i * lda];
                    const double bv = p.tb == E3EMU_OP_N ? b.values[batch * sb + q + 1ll * j * ldb]
                                                         : b.values[batch * sb + j + 1ll * q * ldb];
                    acc += av * bv;
                    magnitude += std::fabs(av * bv);
                }
                const std::size_t at = batch * sc + i + 1ll * j * ldc;
                const double expected = alpha * acc + beta * c0.values[at];
                const double got = p.c_type == E3EMU_R_32F ? c_f32[at] : from_bf16(c_bf16[at]);
                // fp32 accumulation of k products: |error| <= k * 2^-24 * sum|a*b| (standard dot-product
                // bound), plus the final scale/add; a bf16 output adds half an ulp, 2^-9 relative.
                double tolerance = (k + 2) * std::ldexp(1.0, -24) * (alpha * magnitude + std::fabs(beta * c0.values[at]));
                if (p.c_type == E3EMU_R_16BF) tolerance += std::fabs(expected) * std::ldexp(1.0, -8) + 1e-30;
                ASSERT_NEAR(got, expected, tolerance) << "batch " << batch << " (" << i << "," << j << ")";
            }
    // Gaps between batches and rows past m inside ldc must be untouched.
    for (int batch = 0; batch < batches; ++batch)
        for (int j = 0; j < n; ++j)
            for (int i = m; i < ldc; ++i) {
                const std::size_t at = batch * sc + i + 1ll * j * ldc;
                if (p.c_type == E3EMU_R_32F) ASSERT_EQ(c_f32[at], c0.values[at]);
                else ASSERT_EQ(c_bf16[at], c0.half[at]);
            }
}

INSTANTIATE_TEST_SUITE_P(
    AllLayoutsAndTypes, Gemm,
    ::testing::Values(Case{E3EMU_OP_N, E3EMU_OP_N, E3EMU_R_32F, E3EMU_R_32F}, Case{E3EMU_OP_T, E3EMU_OP_N, E3EMU_R_32F, E3EMU_R_32F},
                      Case{E3EMU_OP_N, E3EMU_OP_T, E3EMU_R_16BF, E3EMU_R_32F}, Case{E3EMU_OP_T, E3EMU_OP_T, E3EMU_R_16BF, E3EMU_R_16BF},
                      Case{E3EMU_OP_N, E3EMU_OP_N, E3EMU_R_16F, E3EMU_R_32F}, Case{E3EMU_OP_T, E3EMU_OP_N, E3EMU_R_16F, E3EMU_R_16BF},
                      Case{E3EMU_OP_N, E3EMU_OP_T, E3EMU_R_32F, E3EMU_R_16BF}));

TEST_F(EmuTest, GemmWithBetaZeroNeverReadsC) {
    // cuBLAS semantics: beta == 0 overwrites C, so NaN already in C must not propagate.
    const int m = 4, n = 3, k = 2;
    std::vector<float> a{1, 2, 3, 4, 5, 6, 7, 8}, b{1, 0, 0, 1, 1, 1};
    std::vector<float> c(m * n, std::nanf(""));
    E3EMU_CHECK(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, m, n, k, 2.0f, a.data(), E3EMU_R_32F, m, b.data(), E3EMU_R_32F, k,
                              0.0f, c.data(), E3EMU_R_32F, m, E3EMU_COMPUTE_32F));
    const std::vector<float> expected{2, 4, 6, 8, 10, 12, 14, 16, 12, 16, 20, 24};
    EXPECT_EQ(c, expected);
}

TEST_F(EmuTest, GemmRejectsTooSmallLeadingDimension) {
    std::vector<float> a(16), b(16), c(16);
    EXPECT_EQ(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, 4, 4, 4, 1.0f, a.data(), E3EMU_R_32F, 3, b.data(), E3EMU_R_32F, 4,
                            0.0f, c.data(), E3EMU_R_32F, 4, E3EMU_COMPUTE_32F),
              E3EMU_ERROR_INVALID_VALUE);
    EXPECT_NE(std::string(e3emu_last_error()).find("lda 3 < 4"), std::string::npos) << e3emu_last_error();
}

// TF32 rounding of one value, written out independently in double: keep the top 10 mantissa bits, round to nearest
// with ties away from zero (half the kept grid's step added to the magnitude, then floor).
float reference_tf32(float v) {
    if (!std::isfinite(v) || v == 0.0f) return v;
    int exponent;
    std::frexp(v, &exponent); // v = f * 2^exponent, 0.5 <= |f| < 1: the mantissa's last kept bit weighs 2^(exponent - 11)
    // Subnormals share the smallest normal exponent's grid (fp32's 2^-126 is 0.5 * 2^-125).
    const double step = std::ldexp(1.0, std::max(exponent, -125) - 11);
    const double magnitude = std::floor(std::fabs(static_cast<double>(v)) / step + 0.5) * step;
    if (magnitude >= std::ldexp(1.0, 128)) return std::copysign(std::numeric_limits<float>::infinity(), v); // past FLT_MAX
    return static_cast<float>(std::copysign(magnitude, static_cast<double>(v)));
}

float from_bits(std::uint32_t bits) {
    float v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
}

std::uint32_t to_bits(float v) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return bits;
}

TEST_F(EmuTest, Tf32RoundingAtItsEdges) {
    // A 1x1x1 product with 1.0 (a TF32 value) gives tf32(a) exactly: a carry into the exponent, FLT_MAX (which rounds
    // past the largest TF32 value to infinity, as cvt.rna.tf32.f32 without .satfinite), subnormals on their fixed
    // grid, infinity, and a NaN whose payload lies in the dropped bits (it must stay NaN, not become infinity). (-0 cannot
    // come out of a sum that starts at +0.)
    const std::uint32_t cases[][2] = {
        {0x3fffffffu, 0x40000000u}, {0x3f801000u, 0x3f802000u}, {0xbf801000u, 0xbf802000u}, {0x3f800fffu, 0x3f800000u},
        {0x7f7fffffu, 0x7f800000u}, {0x7f7fe000u, 0x7f7fe000u}, {0x00400800u, 0x00400000u}, {0x00001000u, 0x00002000u},
        {0x00000001u, 0x00000000u}, {0xff800000u, 0xff800000u},
    };
    float one = 1.0f;
    for (const auto& c : cases) {
        const float a = from_bits(c[0]);
        float out = 0.0f;
        E3EMU_CHECK(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, 1, 1, 1, 1.0f, &a, E3EMU_R_32F, 1, &one, E3EMU_R_32F, 1, 0.0f, &out,
                                  E3EMU_R_32F, 1, E3EMU_COMPUTE_32F_FAST_TF32));
        EXPECT_EQ(to_bits(out), c[1]) << std::hex << "tf32(0x" << c[0] << ")";
        EXPECT_EQ(to_bits(reference_tf32(a)), c[1]) << std::hex << "reference(0x" << c[0] << ")";
    }
    const float nan = from_bits(0x7f800001u);
    float out = 0.0f;
    E3EMU_CHECK(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, 1, 1, 1, 1.0f, &nan, E3EMU_R_32F, 1, &one, E3EMU_R_32F, 1, 0.0f, &out,
                              E3EMU_R_32F, 1, E3EMU_COMPUTE_32F_FAST_TF32));
    EXPECT_TRUE(std::isnan(out));
}

TEST_F(EmuTest, Tf32ComputeRoundsFp32OperandsToTenMantissaBits) {
    const int m = 9, n = 7, k = 33;
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    std::vector<float> a(m * k), b(k * n);
    for (auto& v : a) v = dist(rng);
    for (auto& v : b) v = dist(rng);
    a[0] = 1.0f + std::ldexp(1.0f, -11); // exactly halfway between two TF32 values: rounds away from zero
    a[1] = -(1.0f + std::ldexp(1.0f, -11));
    std::vector<float> tf32(m * n), exact(m * n);
    E3EMU_CHECK(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, m, n, k, 1.0f, a.data(), E3EMU_R_32F, m, b.data(), E3EMU_R_32F, k,
                              0.0f, tf32.data(), E3EMU_R_32F, m, E3EMU_COMPUTE_32F_FAST_TF32));
    // The same product in plain fp32 over operands rounded by the reference: the same bits, since the emulator
    // accumulates in the same order either way.
    std::vector<float> ra(a.size()), rb(b.size());
    std::transform(a.begin(), a.end(), ra.begin(), reference_tf32);
    std::transform(b.begin(), b.end(), rb.begin(), reference_tf32);
    EXPECT_EQ(ra[0], 1.0f + std::ldexp(1.0f, -10));
    EXPECT_EQ(ra[1], -(1.0f + std::ldexp(1.0f, -10)));
    E3EMU_CHECK(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, m, n, k, 1.0f, ra.data(), E3EMU_R_32F, m, rb.data(), E3EMU_R_32F, k,
                              0.0f, exact.data(), E3EMU_R_32F, m, E3EMU_COMPUTE_32F));
    EXPECT_EQ(tf32, exact);
    std::vector<float> plain(m * n);
    E3EMU_CHECK(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, m, n, k, 1.0f, a.data(), E3EMU_R_32F, m, b.data(), E3EMU_R_32F, k,
                              0.0f, plain.data(), E3EMU_R_32F, m, E3EMU_COMPUTE_32F));
    EXPECT_NE(tf32, plain); // random fp32 operands have mantissa bits below TF32's
}

TEST_F(EmuTest, Tf32ComputeNeedsFp32OperandsAndKnownComputeTypes) {
    std::vector<std::uint16_t> half(16);
    std::vector<float> c(16);
    EXPECT_EQ(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, 4, 4, 4, 1.0f, half.data(), E3EMU_R_16BF, 4, half.data(), E3EMU_R_16BF, 4,
                            0.0f, c.data(), E3EMU_R_32F, 4, E3EMU_COMPUTE_32F_FAST_TF32),
              E3EMU_ERROR_NOT_SUPPORTED);
    EXPECT_NE(std::string(e3emu_last_error()).find("needs fp32 A, B and C"), std::string::npos) << e3emu_last_error();
    EXPECT_EQ(e3emu_gemm_ex(E3EMU_OP_N, E3EMU_OP_N, 4, 4, 4, 1.0f, c.data(), E3EMU_R_32F, 4, c.data(), E3EMU_R_32F, 4,
                            0.0f, c.data(), E3EMU_R_32F, 4, static_cast<e3emu_compute>(70)),
              E3EMU_ERROR_NOT_SUPPORTED);
}

} // namespace
