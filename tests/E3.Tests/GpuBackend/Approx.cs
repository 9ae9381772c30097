using E3.Backends.Numerics;
using Xunit.Sdk;

namespace E3.Tests.GpuBackend;

/// <summary>Random inputs and element-wise comparisons with a stated bound, reporting the worst element.</summary>
internal static class Approx
{
    public static float[] Random(int count, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(r.NextDouble() * 2 - 1) * scale).ToArray();
    }

    /// <summary>The values a bf16 tensor would hold (round to nearest even).</summary>
    public static float[] RoundBf16(float[] values) => values.Select(v => BFloat16.ToSingle(BFloat16.FromSingle(v))).ToArray();

    /// <summary>Fails unless |got - want| ≤ absolute + relative·|want| for every element.</summary>
    public static void Close(double[] want, ReadOnlySpan<float> got, double relative, double absolute, string what) =>
        Close(want, got, i => absolute + relative * Math.Abs(want[i]), what);

    /// <summary>Fails unless |got[i] - want[i]| ≤ bound(i) for every element.</summary>
    public static void Close(double[] want, ReadOnlySpan<float> got, Func<int, double> bound, string what)
    {
        if (got.Length < want.Length) throw new XunitException($"{what}: {got.Length} values, {want.Length} expected");
        double worst = 0;
        int at = -1;
        for (int i = 0; i < want.Length; i++)
        {
            double err = Math.Abs(got[i] - want[i]);
            double limit = bound(i);
            if (!(err <= limit) && (at < 0 || err / limit > worst)) { worst = err / limit; at = i; }
        }
        if (at >= 0)
            throw new XunitException($"{what}: element {at} is {got[at]}, expected {want[at]} ± {bound(at)} (worst excess ×{worst:g3})");
    }

    public static void Close(float[] want, ReadOnlySpan<float> got, double relative, double absolute, string what) =>
        Close(want.Select(v => (double)v).ToArray(), got, relative, absolute, what);
}
