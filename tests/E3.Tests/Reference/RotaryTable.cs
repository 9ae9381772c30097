using TorchSharp;
using static TorchSharp.torch;

namespace E3.Tests.Reference;

/// <summary>
/// RoPE cos/sin tables as transformers' default rotary embedding builds them, op for op in float32:
/// inv_freq = 1 / theta ** (arange(0, D, 2).float() / D), angles = position.float() ⊗ inv_freq, emb = cat(angles, angles).
/// The float32 angles are kept for every compute dtype, as transformers keeps them even for a float64 model (its
/// rotary forward forces float32), so the drift of float32 angles at long positions is reproduced. cos/sin are then
/// evaluated in float32 for float32/bfloat16 (exactly transformers) and in float64 for the float64 oracle, which keeps
/// them exact instead of rounding them to float32 first.
/// </summary>
internal static class RotaryTable
{
    /// <summary>cos and sin, each [positions, headDim] in <paramref name="dtype"/>, owned by the caller's dispose scope.</summary>
    public static (Tensor Cos, Tensor Sin) Build(long positions, int headDim, double theta, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        var exponent = torch.arange(0, headDim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / (float)headDim;
        // Python's `theta ** tensor` wraps theta as a float32 scalar tensor: float32 pow, then a float32 reciprocal.
        var inverseFrequency = 1.0f / torch.full(exponent.shape, (float)theta, dtype: ScalarType.Float32).pow(exponent);
        var position = torch.arange(0, positions, dtype: ScalarType.Int64).to(ScalarType.Float32);
        var angle = torch.outer(position, inverseFrequency);
        var doubled = torch.cat([angle, angle], dim: -1);
        var evaluated = dtype == ScalarType.Float64 ? doubled.to(ScalarType.Float64) : doubled;
        var cos = evaluated.cos().to(dtype);
        var sin = evaluated.sin().to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
