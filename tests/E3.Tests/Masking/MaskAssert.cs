using Xunit;

namespace E3.Tests.Masking;

/// <summary>
/// Closeness of fp32 masks and gradients relative to the largest reference magnitude: elementwise relative
/// error says nothing for gradient entries that cancel to ~0.
/// </summary>
internal static class MaskAssert
{
    public static void Close(float[] expected, float[] actual, double relative, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var scale = expected.Max(v => Math.Abs((double)v));
        var worst = expected.Zip(actual, (e, a) => Math.Abs((double)e - a)).Max();
        Assert.True(worst <= relative * scale, $"{what}: max |diff| {worst:E3} > {relative:E1} x max |ref| {scale:E3}");
    }
}
