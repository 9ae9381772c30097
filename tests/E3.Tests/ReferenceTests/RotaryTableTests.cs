using E3.Tests.Reference;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.ReferenceTests;

public class RotaryTableTests
{
    private const int Positions = 4096;

    /// <summary>
    /// The table against RoPE evaluated independently in double precision, cos(p / theta^(2j/D)), for the
    /// (theta, head_dim) pairs of Qwen3, Qwen2 and Llama checkpoints over 4096 positions.
    /// </summary>
    [Theory]
    [InlineData(1_000_000.0, 128)]
    [InlineData(1_000_000.0, 64)]
    [InlineData(500_000.0, 64)]
    [InlineData(10_000.0, 128)]
    [InlineData(10_000.0, 8)]
    public void MatchesExactRopeWithinFloat32AngleError(double theta, int headDim)
    {
        using var scope = torch.NewDisposeScope();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64 })
        {
            var (cos, sin) = RotaryTable.Build(Positions, headDim, theta, dtype);
            Assert.Equal(dtype, cos.dtype);
            Assert.Equal([(long)Positions, headDim], cos.shape);
            var cosValues = cos.to(ScalarType.Float64).data<double>().ToArray();
            var sinValues = sin.to(ScalarType.Float64).data<double>().ToArray();
            for (int p = 0; p < Positions; p++)
            {
                for (int j = 0; j < headDim; j++)
                {
                    double angle = p / Math.Pow(theta, 2.0 * (j % (headDim / 2)) / headDim);
                    // transformers' float32 angle carries up to ~3 roundings (pow, reciprocal, product) of 2^-24
                    // relative each: 4·2^-24·angle bounds it. float32 cos/sin add one ulp of a value <= 1 (2^-23).
                    double bound = 4 * Math.ScaleB(angle, -24) + Math.ScaleB(1, -23);
                    int k = p * headDim + j;
                    Assert.True(Math.Abs(cosValues[k] - Math.Cos(angle)) <= bound, $"{dtype} cos p={p} j={j}: {cosValues[k]} vs {Math.Cos(angle)}");
                    Assert.True(Math.Abs(sinValues[k] - Math.Sin(angle)) <= bound, $"{dtype} sin p={p} j={j}: {sinValues[k]} vs {Math.Sin(angle)}");
                }
            }
        }
    }

    [Fact]
    public void Float64TableKeepsTheFloat32AnglesOfTransformers()
    {
        // Both dtypes must rotate by the same float32 angles; float64 only evaluates cos without rounding it.
        using var scope = torch.NewDisposeScope();
        var (cos32, _) = RotaryTable.Build(Positions, 128, 1_000_000, ScalarType.Float32);
        var (cos64, _) = RotaryTable.Build(Positions, 128, 1_000_000, ScalarType.Float64);
        double gap = (cos32.to(ScalarType.Float64) - cos64).abs().max().item<double>();
        // Half a float32 ulp of values <= 1 (2^-25 ≈ 3e-8) plus libtorch's float32 cos error (~1 ulp); an exact
        // float64 angle would instead differ by up to 2^-12 at position 4096.
        Assert.True(gap <= Math.ScaleB(1, -23), $"gap {gap}");
    }
}
