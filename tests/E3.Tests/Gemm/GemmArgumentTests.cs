using E3.Backends.Cpu;
using Xunit;

namespace E3.Tests.Gemm;

public unsafe class GemmArgumentTests
{
    [Fact]
    public void NegativeSizeIsRejectedWithItsName()
    {
        float* p = stackalloc float[4];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => CpuGemm.MatMulTransB(p, 1, -2, p, 1, p, null, false));
        Assert.Equal("k", e.ParamName);
        Assert.Contains("-2", e.Message);
    }

    [Fact]
    public void MissingNonEmptyBufferIsRejectedWithItsName()
    {
        float* p = stackalloc float[4];
        var e = Assert.Throws<ArgumentNullException>(() => CpuGemm.MatMulTransA(p, 2, 2, null, 2, p, false));
        Assert.Equal("dy", e.ParamName);
        Assert.Contains("2x2", e.Message);
    }

    /// <summary>With k = 0 the product is empty: y becomes bias (plus y when accumulating); null x/w are fine.</summary>
    [Fact]
    public void EmptyInnerDimensionLeavesBiasAndAccumulatedOutput()
    {
        float[] y = [1, 2, 3, 4, 5, 6];
        float[] bias = [10, 20, 30];
        fixed (float* yp = y, b = bias)
        {
            CpuGemm.MatMulTransB(null, 2, 0, (float*)null, 3, yp, b, accumulate: true);
            Assert.Equal([11f, 22, 33, 14, 25, 36], y);
            CpuGemm.MatMulTransB(null, 2, 0, (ushort*)null, 3, yp, b, accumulate: false);
            Assert.Equal([10f, 20, 30, 10, 20, 30], y);
            CpuGemm.MatMul(null, 2, 0, (float*)null, 3, yp, accumulate: false);
            Assert.Equal(new float[6], y);
        }
    }
}
