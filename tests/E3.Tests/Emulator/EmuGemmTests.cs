using E3.Interop.Emulator;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.Emulator;

/// <summary>The emulator's cuBLAS-style GEMM against TorchSharp matmul in float64.</summary>
[Collection(EmuCollection.Name)]
public sealed unsafe class EmuGemmTests(EmuFixture fixture)
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void ColumnMajorGemmWithPaddedLeadingDimensionsMatchesTorch(bool transposeA, bool transposeB)
    {
        var transA = transposeA ? EmuOperation.T : EmuOperation.N;
        var transB = transposeB ? EmuOperation.T : EmuOperation.N;
        _ = fixture.Device; // the fixture initialised the emulator
        const int m = 19, n = 23, k = 31;
        const float alpha = 1.25f, beta = 0.5f;
        var aRows = transA == EmuOperation.N ? m : k;
        var aCols = transA == EmuOperation.N ? k : m;
        var bRows = transB == EmuOperation.N ? k : n;
        var bCols = transB == EmuOperation.N ? n : k;
        int lda = aRows + 3, ldb = bRows + 2, ldc = m + 4;
        var random = new Random(11);
        float[] Random(int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var a = Random(lda * aCols);
        var b = Random(ldb * bCols);
        var c = Random(ldc * n);
        var c0 = (float[])c.Clone();

        fixed (float* pa = a, pb = b, pc = c)
            EmuNative.Check(EmuNative.GemmEx(transA, transB, m, n, k, alpha, pa, EmuDataType.Float32, lda, pb,
                EmuDataType.Float32, ldb, beta, pc, EmuDataType.Float32, ldc, (int)E3.Interop.Gpu.GemmCompute.Fp32));

        // Column-major storage with leading dimension ld is the row-major (cols x ld) tensor; slice and transpose.
        Tensor ColumnMajor(float[] data, int rows, int cols, int ld) =>
            torch.tensor(data.Select(v => (double)v).ToArray(), [cols, ld], ScalarType.Float64)[.., ..rows].t();
        using var opA = transA == EmuOperation.N ? ColumnMajor(a, m, k, lda) : ColumnMajor(a, k, m, lda).t();
        using var opB = transB == EmuOperation.N ? ColumnMajor(b, k, n, ldb) : ColumnMajor(b, n, k, ldb).t();
        using var c0Matrix = ColumnMajor(c0, m, n, ldc);
        using var expected = alpha * opA.matmul(opB) + beta * c0Matrix;
        using var magnitude = alpha * opA.abs().matmul(opB.abs()) + beta * c0Matrix.abs();
        var expectedValues = expected.contiguous().data<double>().ToArray();
        var bounds = magnitude.contiguous().data<double>().ToArray();
        for (var i = 0; i < m; i++)
            for (var j = 0; j < n; j++)
            {
                // fp32 accumulation of k products: |error| <= (k + 2) * 2^-24 * sum|terms| (dot-product bound).
                var tolerance = (k + 2) * Math.ScaleB(1.0, -24) * bounds[i * n + j];
                Assert.InRange(c[i + j * ldc], expectedValues[i * n + j] - tolerance, expectedValues[i * n + j] + tolerance);
            }
        for (var j = 0; j < n; j++)
            for (var i = m; i < ldc; i++)
                Assert.Equal(c0[i + j * ldc], c[i + j * ldc]); // padding rows inside ldc stay untouched
    }
}
