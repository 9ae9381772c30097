namespace E3.Cli.Commands.Prune;

/// <summary>Everything <c>e3 prune</c> was asked to do.</summary>
internal sealed record PruneSettings
{
    public required string Model { get; init; }
    public required string Data { get; init; }
    public string? EvalData { get; init; }
    public double? Prune { get; init; }
    public int? Keep { get; init; }
    public required string Output { get; init; }
    /// <summary>Fraction of --data held out for evaluation when --eval-data is not given (taken from the end).</summary>
    public double Holdout { get; init; } = 0.1;
    public IReadOnlyList<string> Baselines { get; init; } = ["bi", "angular", "last", "random", "drop-one-kl"];
    public long CalibrationTokens { get; init; } = 2048;
    public long SearchTokens { get; init; } = 16384;
    public long DistillTokens { get; init; } = 40960;
    public long EvalTokens { get; init; } = 16384;
    public int Sequence { get; init; } = 128;
    public int Batch { get; init; } = 4;
    public int Samples { get; init; } = 4;
    public double SearchLearningRate { get; init; } = 0.05;
    public double DistillLearningRate { get; init; } = 1e-3;
    public bool DistillBestBaseline { get; init; } = true;
    public ulong Seed { get; init; }
    public int BenchPrefill { get; init; } = 128;
    public int BenchDecode { get; init; } = 32;
    public int BenchRepeats { get; init; } = 5;
    public string Device { get; init; } = "cpu";
    public int Threads { get; init; }
    public bool Resume { get; init; }
    /// <summary>Search and distillation recompute each layer in the backward (the same results, a layer's activations instead of all).</summary>
    public bool ActivationCheckpointing { get; init; }
    /// <summary>Search and distillation run their fp32 GEMMs with TF32 operands (--tf32).</summary>
    public bool Tf32 { get; init; }
}
