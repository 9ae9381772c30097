using E3.Interop.Kernels;

namespace E3.Model.Decoder;

/// <summary>
/// How generation draws each next token instead of taking the most likely one: temperature, then top-k and top-p
/// (nucleus) over the tempered logits, drawn by the Gumbel-max trick from a Philox stream keyed by
/// <see cref="Seed"/>, the position and the sequence. Every backend draws by the same rule and noise, so a seed gives the
/// same tokens wherever the logits are the same (the CPU and a GPU device opened for training, in fp32; a GPU's
/// inference logits are bf16 and differ slightly), and the draw is exactly the softmax restricted to the kept tokens.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>The largest <see cref="TopK"/>; also the most tokens <see cref="TopP"/> alone considers.</summary>
    public const int MaxTopK = SamplingKernels.MaxTopK;

    /// <summary>The smallest <see cref="Temperature"/>: logits divided by less could overflow fp32 and lose their order.</summary>
    public const float MinTemperature = SamplingSettings.MinTemperature;

    /// <summary>
    /// Divides the logits before the softmax: finite and at least <see cref="MinTemperature"/> (below 1 sharpens the
    /// distribution, above 1 flattens it; for the most likely token, pass no sampling options at all).
    /// </summary>
    public float Temperature { get; init; } = 1f;

    /// <summary>Keep only the K most likely tokens, 1..<see cref="MaxTopK"/>; 0 for no limit.</summary>
    public int TopK { get; init; }

    /// <summary>
    /// Keep the shortest run of most likely tokens holding this much of their probability, in (0, 1]; 1 keeps them all.
    /// With <see cref="TopK"/> 0 it considers the <see cref="MaxTopK"/> most likely tokens.
    /// </summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Seeds the draws.</summary>
    public ulong Seed { get; init; }

    /// <summary>The kernel's settings for the draw at <paramref name="step"/> (the position of the logits' row).</summary>
    internal SamplingSettings At(long step) => new(Temperature, TopK, TopP, Seed, step);
}
