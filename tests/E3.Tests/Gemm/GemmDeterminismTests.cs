using E3.Backends.Cpu.Gemm;
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
        for (int run = 1; run < 5; run++) AssertBitwiseEqual(first, problem.RunOurs(), $"{problem}: run {run}");
    }

    /// <summary>
    /// The partition of the output into tasks depends on the thread count; the value of each element must
    /// not. One thread, an odd count and many threads (smaller N blocks, M split into groups) all agree.
    /// </summary>
    [Theory]
    [InlineData(GemmVariant.TransBF32, 384)]
    [InlineData(GemmVariant.TransBBf16, 7)]
    [InlineData(GemmVariant.MatMulBf16, 384)]
    [InlineData(GemmVariant.TransA, 384)]
    public void ResultDoesNotDependOnThreadCount(GemmVariant variant, int m)
    {
        var problem = new GemmProblem(variant, m, 513, 1000, accumulate: true, withBias: true, seed: 43);
        var reference = problem.RunOurs(GemmDispatch.PreferPortable, workers: 1);
        foreach (int workers in new[] { 3, 64 })
            AssertBitwiseEqual(reference, problem.RunOurs(GemmDispatch.PreferPortable, workers), $"{problem}: {workers} workers");
    }

    private static void AssertBitwiseEqual(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what} differs at element {i}: {actual[i]:R} vs {expected[i]:R}");
    }
}
