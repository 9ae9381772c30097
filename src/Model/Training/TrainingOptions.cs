namespace E3.Model.Training;

/// <summary>What the backward computes besides activation and gate gradients.</summary>
internal enum TrainingMode
{
    /// <summary>Activation and gate gradients only; no weight-gradient buffer is allocated.</summary>
    Frozen,
    /// <summary>Also fp32 gradients of every parameter not matched by <see cref="TrainingOptions.Freeze"/>.</summary>
    Train,
}

/// <summary>How a <see cref="GatedDecoderTrainer"/> runs its forward and backward.</summary>
internal sealed record TrainingOptions
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

    /// <summary>
    /// The pruned model's mask. In Train mode only the layers it keeps (gate ≠ 0) get weight-gradient buffers, weight-gradient
    /// work and, in <see cref="TrainingMemoryPlan"/>, gradients and optimizer state; the embedding, final norm and LM head are
    /// unaffected (they follow <see cref="Freeze"/>). Null retains every layer. The distillation of a pruned model passes
    /// the mask it was pruned with.
    /// </summary>
    public LayerMask? RetainedLayers { get; init; }

    /// <summary>The trainability rule these options define.</summary>
    public ParameterFilter Parameters() => new(Freeze, RetainedLayers);
}
