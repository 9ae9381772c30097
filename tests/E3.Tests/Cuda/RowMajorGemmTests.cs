using E3.Interop.Gpu;
using Xunit;

namespace E3.Tests.Cuda;

/// <summary>
/// Checks the row-major mapping by executing its GemmDescriptor with a plain column-major BLAS reference (double
/// precision, written from the BLAS definition) over the same flat buffers, and comparing with y = x · wᵀ
/// computed directly in row-major form.
/// </summary>
public sealed class RowMajorGemmTests
{
    private const ulong XBase = 0x10000, WBase = 0x20000, YBase = 0x30000;

    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 5, 7)]
    [InlineData(8, 2, 16)]
    public void LinearMapsToTheEquivalentColumnMajorGemm(int m, int n, int k)
    {
        var random = new Random(m * 100 + n * 10 + k);
        var x = Values(random, m * k);
        var w = Values(random, n * k);
        var gemm = RowMajorGemm.Linear(new DevicePtr(XBase), new DevicePtr(WBase), new DevicePtr(YBase), m, n, k, GemmDataType.BF16, GemmDataType.F32);

        var y = new double[m * n];
        ColumnMajorReference(gemm, Buffers(x, w, y), batch: 0);

        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double expected = 0;
                for (int p = 0; p < k; p++)
                    expected += x[i * k + p] * w[j * k + p];
                // Same products summed in the same order in double: only the association can differ, so
                // agreement is to double rounding of a k-term sum.
                Assert.Equal(expected, y[i * n + j], 1e-12);
            }
        Assert.Equal((GemmDataType.BF16, GemmDataType.BF16, GemmDataType.F32), (gemm.A.Type, gemm.B.Type, gemm.C.Type));
    }

    [Fact]
    public void BatchedLinearUsesEachBatchsMatrices()
    {
        const int m = 3, n = 4, k = 5, batches = 3;
        var random = new Random(7);
        var x = Values(random, batches * m * k);
        var w = Values(random, n * k); // shared weight: stride 0
        var gemm = RowMajorGemm.LinearBatched(new DevicePtr(XBase), new DevicePtr(WBase), new DevicePtr(YBase), m, n, k,
            GemmDataType.F32, GemmDataType.F32, batches, xStride: m * k, wStride: 0, yStride: m * n);
        var y = new double[batches * m * n];
        for (int b = 0; b < batches; b++)
            ColumnMajorReference(gemm, Buffers(x, w, y), b);
        for (int b = 0; b < batches; b++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double expected = 0;
                    for (int p = 0; p < k; p++)
                        expected += x[b * m * k + i * k + p] * w[j * k + p];
                    Assert.Equal(expected, y[b * m * n + i * n + j], 1e-12);
                }
    }

    [Fact]
    public void InvalidLeadingDimensionNamesTheField()
    {
        var gemm = new GemmDescriptor(GemmOperation.None, GemmOperation.None, 4, 4, 4, 1f,
            new GemmMatrix(new DevicePtr(1), GemmDataType.F32, 3), new GemmMatrix(new DevicePtr(2), GemmDataType.F32, 4), 0f,
            new GemmMatrix(new DevicePtr(3), GemmDataType.F32, 4));
        var error = Assert.Throws<ArgumentException>(gemm.Validate);
        Assert.Contains("A.LeadingDimension = 3", error.Message);
        Assert.Throws<ArgumentException>(() => RowMajorGemm.Linear(default, default, default, -1, 2, 2, GemmDataType.F32, GemmDataType.F32));
    }

    [Fact]
    public void Tf32ComputeIsForFp32OperandsOnly()
    {
        // cuBLAS's 32F_FAST_TF32 rounds fp32 operands; bf16 ones already go to the tensor cores under 32F.
        var tf32 = RowMajorGemm.Linear(new DevicePtr(1), new DevicePtr(2), new DevicePtr(3), 2, 2, 2, GemmDataType.F32, GemmDataType.F32,
            compute: GemmCompute.FastTf32);
        Assert.Equal(GemmCompute.FastTf32, tf32.Compute);
        Assert.Equal(77, (int)GemmCompute.FastTf32); // the value cublasGemmEx takes as computeType
        Assert.Equal(68, (int)GemmCompute.Fp32);
        var error = Assert.Throws<ArgumentException>(() => RowMajorGemm.Linear(new DevicePtr(1), new DevicePtr(2), new DevicePtr(3), 2, 2, 2,
            GemmDataType.BF16, GemmDataType.F32, compute: GemmCompute.FastTf32));
        Assert.Contains("FastTf32 needs fp32 A, B and C, not BF16, BF16 and F32", error.Message);
        Assert.Throws<ArgumentException>(() => RowMajorGemm.Linear(new DevicePtr(1), new DevicePtr(2), new DevicePtr(3), 2, 2, 2,
            GemmDataType.F32, GemmDataType.BF16, compute: GemmCompute.FastTf32));
        Assert.Throws<ArgumentException>(() => (tf32 with { Compute = (GemmCompute)70 }).Validate());
    }

    private static double[] Values(Random random, int count) => Enumerable.Range(0, count).Select(_ => random.NextDouble() * 2 - 1).ToArray();

    private static Dictionary<ulong, double[]> Buffers(double[] x, double[] w, double[] y) => new() { [XBase] = x, [WBase] = w, [YBase] = y };

    // C = alpha * op(A) * op(B) + beta * C, every matrix column-major: element (r, c) of a stored matrix with
    // leading dimension ld is at r + c * ld (BLAS reference semantics). Pointers index the fake device buffers.
    private static void ColumnMajorReference(GemmDescriptor g, Dictionary<ulong, double[]> memory, int batch)
    {
        var a = memory[g.A.Pointer.Address];
        var b = memory[g.B.Pointer.Address];
        var c = memory[g.C.Pointer.Address];
        long aBase = batch * g.A.BatchStride, bBase = batch * g.B.BatchStride, cBase = batch * g.C.BatchStride;
        double A(int r, int col) => g.TransA == GemmOperation.None ? a[aBase + r + col * g.A.LeadingDimension] : a[aBase + col + r * g.A.LeadingDimension];
        double B(int r, int col) => g.TransB == GemmOperation.None ? b[bBase + r + col * g.B.LeadingDimension] : b[bBase + col + r * g.B.LeadingDimension];
        for (int i = 0; i < g.M; i++)
            for (int j = 0; j < g.N; j++)
            {
                double sum = 0;
                for (int p = 0; p < g.K; p++)
                    sum += A(i, p) * B(p, j);
                long index = cBase + i + (long)j * g.C.LeadingDimension;
                c[index] = g.Alpha * sum + g.Beta * c[index];
            }
    }
}
