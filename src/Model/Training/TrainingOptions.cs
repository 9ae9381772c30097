namespace E3.Model.Training;

/// <summary>What the backward computes besides activation and gate gradients.</summary>
public enum TrainingMode
{
    /// <summary>Activation and gate gradients only; no weight-gradient buffer is allocated.</summary>
    Frozen,
    /// <summary>Also fp32 gradients of every parameter not matched by <see cref="TrainingOptions.Freeze"/>.</summary>
    Train,
}

/// <summary>How a <see cref="GatedDecoderTrainer"/> runs its forward and backward.</summary>
public sealed record TrainingOptions
{
    public TrainingMode Mode { get; init; } = TrainingMode.Frozen;

    /// <summary>Keep only each layer's input in the forward and recompute the layer inside the backward.</summary>
    public bool Checkpointing { get; init; }

    /// <summary>
    /// Compute Δ_l = layer(h) − h even for layers whose gate is 0, so their gate gradient exists (the search needs it:
    /// a dropped layer must learn whether it should come back). When false such layers are skipped and their gate
    /// gradient is reported as NaN.
    /// </summary>
    public bool ComputeDroppedLayers { get; init; }

    /// <summary>Glob patterns ('*' any run, '?' one character) over HF tensor names that get no gradient in Train mode.</summary>
    public IReadOnlyList<string> Freeze { get; init; } = [];
}
