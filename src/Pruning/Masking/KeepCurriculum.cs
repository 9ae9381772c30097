namespace E3.Pruning.Masking;

/// <summary>
/// The pruning-ratio curriculum: the number of layers kept starts at <see cref="WarmupKeep"/> and moves linearly
/// to <see cref="TargetKeep"/> over <see cref="Steps"/> steps (rounded to the nearest count, ties away from zero),
/// staying there afterwards.
/// </summary>
internal sealed record KeepCurriculum
{
    /// <summary>Checks that both counts lie in [1, layers] and steps &gt;= 1; the ramp may go either way.</summary>
    public KeepCurriculum(int layers, int warmupKeep, int targetKeep, long steps)
    {
        if (layers < 1 || layers > GumbelTopKSpec.MaxLayers)
            throw new MaskSamplerException("curriculum.layers", layers, $"must be in [1, {GumbelTopKSpec.MaxLayers}]");
        if (warmupKeep < 1 || warmupKeep > layers)
            throw new MaskSamplerException("curriculum.warmupKeep", warmupKeep, $"must be in [1, layers = {layers}]");
        if (targetKeep < 1 || targetKeep > layers)
            throw new MaskSamplerException("curriculum.targetKeep", targetKeep, $"must be in [1, layers = {layers}]");
        if (steps < 1)
            throw new MaskSamplerException("curriculum.steps", steps, "must be at least 1");
        (Layers, WarmupKeep, TargetKeep, Steps) = (layers, warmupKeep, targetKeep, steps);
    }

    /// <summary>Decoder layers of the model.</summary>
    public int Layers { get; }

    /// <summary>Layers kept at step 0.</summary>
    public int WarmupKeep { get; }

    /// <summary>Layers kept from <see cref="Steps"/> on.</summary>
    public int TargetKeep { get; }

    /// <summary>Steps of the ramp.</summary>
    public long Steps { get; }

    /// <summary>The kept count at <paramref name="step"/>.</summary>
    public int At(long step)
    {
        var x = Math.Clamp((double)step / Steps, 0.0, 1.0);
        return (int)Math.Round(WarmupKeep + (TargetKeep - WarmupKeep) * x, MidpointRounding.AwayFromZero);
    }
}
