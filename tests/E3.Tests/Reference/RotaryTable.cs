using TorchSharp;
using static TorchSharp.torch;

namespace E3.Tests.Reference;

/// <summary>
/// RoPE cos/sin tables as transformers' default rotary embedding builds them: float32 inv_freq =
/// 1/theta^(arange(0,D,2)/D) with the exponent divided in float32, float32 angles position·inv_freq, and cos/sin of
/// cat(freqs, freqs). transformers evaluates pow and cos in float32 (last-ulp results depend on the libm/SLEEF path);
/// here they are evaluated in float64 and rounded once to float32, which agrees with transformers to one float32 ulp
/// and makes the table exactly reproducible by an independent scalar implementation. As in transformers, the table is
/// float32 whatever the compute dtype, and is cast to it afterwards.
/// </summary>
internal static class RotaryTable
{
    /// <summary>cos and sin, each [positions, headDim] float32, owned by the caller's dispose scope.</summary>
    public static (Tensor Cos, Tensor Sin) Build(long positions, int headDim, double theta)
    {
        using var scope = torch.NewDisposeScope();
        var exponent = torch.arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / (float)headDim;
        var power = torch.full(exponent.shape, theta, dtype: ScalarType.Float64).pow(exponent.to(ScalarType.Float64));
        var inverseFrequency = power.reciprocal().to(ScalarType.Float32);
        var position = torch.arange(0, positions, dtype: ScalarType.Int64).to(ScalarType.Float32);
        var angle = torch.outer(position, inverseFrequency);
        var doubled = torch.cat([angle, angle], dim: -1).to(ScalarType.Float64);
        var cos = doubled.cos().to(ScalarType.Float32);
        var sin = doubled.sin().to(ScalarType.Float32);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
