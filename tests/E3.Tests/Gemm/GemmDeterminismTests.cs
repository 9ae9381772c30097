using Xunit;

namespace E3.Tests.Gemm;

public class GemmDeterminismTests
{
    /// <summary>
    /// Threads own whole output tiles, so five runs (with the thread pool free to schedule differently each
    /// time) must agree bit for bit, on both the blocked path and the skinny decode path.
    /// </summary>
    [Theory]
    [InlineData(GemmVariant.TransBF32, 384)]
    [InlineData(GemmVariant.TransBBf16, 384)]
    [InlineData(GemmVariant.TransBBf16, 5)]
    [InlineData(GemmVariant.MatMulF32, 384)]
    [InlineData(GemmVariant.MatMulBf16, 384)]
    [InlineData(GemmVariant.TransA, 384)]
    public void RepeatedRunsAreBitwiseEqual(GemmVariant variant, int m)
    {
        var problem = new GemmProblem(variant, m, 513, 1000, accumulate: true, withBias: true, seed: 42);
        var first = problem.RunOurs();
        for (int run = 1; run < 5; run++)
        {
            var again = problem.RunOurs();
            for (int i = 0; i < first.Length; i++)
                if (BitConverter.SingleToInt32Bits(first[i]) != BitConverter.SingleToInt32Bits(again[i]))
                    Assert.Fail($"{problem}: run {run} differs at element {i}: {again[i]:R} vs {first[i]:R}");
        }
    }
}
