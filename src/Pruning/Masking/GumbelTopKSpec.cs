using E3.Interop.Kernels;

namespace E3.Pruning.Masking;

/// <summary>
/// One batched Gumbel-TopK draw: <see cref="Samples"/> masks over <see cref="Layers"/> decoder layers keeping
/// <see cref="Keep"/> of them, at temperature <see cref="Temperature"/>, with noise keyed by (<see cref="Seed"/>,
/// <see cref="Step"/>, sample, layer). Mask tensors are row-major [Samples x Layers].
/// </summary>
internal readonly record struct GumbelTopKSpec(int Layers, int Keep, int Samples, float Temperature, ulong Seed, long Step,
    GumbelRelaxation Relaxation = GumbelRelaxation.SoftTopK)
{
    /// <summary>Most layers one mask covers (the kernel keeps one thread and one fp64 score per layer in a block).</summary>
    public const int MaxLayers = 256;

    /// <summary>Elements of one [Samples x Layers] mask tensor.</summary>
    public long MaskElements => (long)Samples * Layers;

    /// <summary>Throws <see cref="MaskSamplerException"/> unless the shape, temperature and relaxation are usable.</summary>
    public void Validate()
    {
        if (Layers < 1 || Layers > MaxLayers)
            throw new MaskSamplerException("layers", Layers, $"must be in [1, {MaxLayers}]");
        if (Keep < 1 || Keep > Layers)
            throw new MaskSamplerException("keep", Keep, $"must be in [1, layers = {Layers}]");
        if (Samples < 1)
            throw new MaskSamplerException("samples", Samples, "must be at least 1");
        if (!(Temperature > 0) || float.IsPositiveInfinity(Temperature))
            throw new MaskSamplerException("temperature", Temperature, "must be finite and > 0");
        if (!Enum.IsDefined(Relaxation))
            throw new MaskSamplerException("relaxation", Relaxation, "must be SoftTopK or Sigmoid");
    }

    /// <summary><see cref="Validate()"/>, plus: one logit per layer, each finite.</summary>
    public void Validate(ReadOnlySpan<float> logits)
    {
        Validate();
        if (logits.Length != Layers)
            throw new MaskSamplerException("logits.Length", logits.Length, $"must equal layers = {Layers}");
        for (var i = 0; i < logits.Length; i++)
            if (!float.IsFinite(logits[i]))
                throw new MaskSamplerException($"logits[{i}]", logits[i], "must be finite");
    }

    /// <summary>Throws unless <paramref name="length"/> is that of one [Samples x Layers] mask (<paramref name="name"/> names the tensor).</summary>
    public void RequireMaskLength(int length, string name)
    {
        if (length != MaskElements)
            throw new MaskSamplerException($"{name}.Length", length, $"must equal samples x layers = {MaskElements}");
    }
}
