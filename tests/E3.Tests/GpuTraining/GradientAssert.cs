using Xunit;

namespace E3.Tests.GpuTraining;

/// <summary>Norm-wise comparison of a gradient against a reference: ‖got − want‖ / ‖want‖ ≤ bound.</summary>
internal static class GradientAssert
{
    /// <summary>
    /// Fails unless ‖got − want‖ ≤ bound · max(‖want‖, <paramref name="floor"/>); with no floor a zero reference needs an
    /// exactly zero result. The floor is for results that cancel to (near) zero, whose rounding scales with the inputs.
    /// </summary>
    public static void Close(ReadOnlySpan<float> want, ReadOnlySpan<float> got, double bound, string what, double floor = 0)
    {
        Assert.Equal(want.Length, got.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double d = (double)got[i] - want[i];
            Assert.False(double.IsNaN(got[i]), $"{what}: element {i} is NaN");
            diff += d * d;
            norm += (double)want[i] * want[i];
        }
        norm = Math.Max(norm, floor * floor);
        if (norm == 0)
        {
            Assert.True(diff == 0, $"{what}: the reference is zero but the result has norm {Math.Sqrt(diff):E3}");
            return;
        }
        double relative = Math.Sqrt(diff / norm);
        Assert.True(relative <= bound, $"{what}: relative error {relative:E3} > {bound:E1} (reference norm {Math.Sqrt(norm):E3})");
    }
}
