using System.Globalization;
using System.Text.Json.Nodes;

namespace E3.Pruning.Distill;

/// <summary>How the learning rate moves after warmup.</summary>
public enum LrSchedule
{
    /// <summary>Half a cosine from the peak down to <see cref="TrainingSettings.MinLrRatio"/> × peak at the last step.</summary>
    Cosine,
    /// <summary>The peak rate for every step after warmup.</summary>
    Constant,
}

/// <summary>
/// The hyper-parameters of one training run, shared by <c>e3 train</c> and <c>e3 distill</c>. Everything here goes
/// into the checkpoint fingerprint, so a resumed run must be started with the same values.
/// </summary>
public sealed record TrainingSettings
{
    /// <summary>Tokens to train on in total; the run takes ⌈Tokens / (Batch·Sequence·GradAccum)⌉ optimizer steps.</summary>
    public long Tokens { get; init; } = 1_000_000;
    /// <summary>T: tokens per sequence.</summary>
    public int Sequence { get; init; } = 128;
    /// <summary>B: sequences per micro-batch.</summary>
    public int Batch { get; init; } = 8;
    /// <summary>Micro-batches whose gradients are averaged into one optimizer step.</summary>
    public int GradAccum { get; init; } = 1;
    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>Optimizer steps of linear warmup from 0 to the peak.</summary>
    public int Warmup { get; init; } = 100;
    /// <summary>How the rate moves after warmup.</summary>
    public LrSchedule Schedule { get; init; } = LrSchedule.Cosine;
    /// <summary>Floor of the cosine, as a fraction of the peak (a rate of exactly 0 at the end wastes the last steps).</summary>
    public double MinLrRatio { get; init; } = 0.1;
    /// <summary>Largest global gradient L2 norm; larger gradients are scaled down to it. 0 disables clipping.</summary>
    public double Clip { get; init; } = 1.0;
    /// <summary>AdamW's decoupled weight decay (0: none: distillation starts from trained weights).</summary>
    public double WeightDecay { get; init; } = 0.0;
    /// <summary>Selects the data windows (<see cref="Data.TokenWindows"/>).</summary>
    public ulong Seed { get; init; }
    /// <summary>Optimizer steps between checkpoints (0: only at the end).</summary>
    public int CheckpointEvery { get; init; } = 100;

    /// <summary>Tokens one optimizer step consumes.</summary>
    public long TokensPerStep => (long)Batch * Sequence * GradAccum;

    /// <summary>Optimizer steps the run takes.</summary>
    public long TotalSteps => Math.Max(1, (Tokens + TokensPerStep - 1) / TokensPerStep);

    /// <summary>Throws <see cref="ArgumentException"/> naming the option and value that is out of range.</summary>
    public void Validate()
    {
        if (Tokens < 1) throw new ArgumentException($"--tokens: {Tokens} must be >= 1");
        if (Sequence < 2) throw new ArgumentException($"--seq: {Sequence} must be >= 2");
        if (Batch < 1) throw new ArgumentException($"--batch: {Batch} must be >= 1");
        if (GradAccum < 1) throw new ArgumentException($"--grad-accum: {GradAccum} must be >= 1");
        if (!(LearningRate > 0) || !double.IsFinite(LearningRate)) throw new ArgumentException($"--lr: {LearningRate} must be finite and > 0");
        if (Warmup < 0) throw new ArgumentException($"--warmup: {Warmup} must be >= 0");
        if (!(MinLrRatio is >= 0 and <= 1)) throw new ArgumentException($"min lr ratio {MinLrRatio} must lie in [0, 1]");
        if (!(Clip >= 0) || !double.IsFinite(Clip)) throw new ArgumentException($"--clip: {Clip} must be finite and >= 0");
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay)) throw new ArgumentException($"--weight-decay: {WeightDecay} must be finite and >= 0");
        if (CheckpointEvery < 0) throw new ArgumentException($"--checkpoint-every: {CheckpointEvery} must be >= 0");
        if (!Enum.IsDefined(Schedule)) throw new ArgumentException($"--schedule: {Schedule} is unknown");
    }

    /// <summary>
    /// The learning rate of optimizer step <paramref name="step"/> (0-based): linear warmup over steps
    /// 0..Warmup−1 (step s gets (s+1)/Warmup of the peak, so the first update is not wasted), then the schedule (the first step after warmup runs at the peak, the last at the floor).
    /// </summary>
    public double LearningRateAt(long step)
    {
        if (step < Warmup) return LearningRate * (step + 1) / Warmup;
        if (Schedule == LrSchedule.Constant) return LearningRate;
        long decaySteps = TotalSteps - Warmup;
        double progress = decaySteps <= 1 ? 0.0 : (double)(step - Warmup) / (decaySteps - 1);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * Math.Clamp(progress, 0, 1)));
        return LearningRate * (MinLrRatio + (1 - MinLrRatio) * cosine);
    }

    /// <summary>The settings as JSON (for the fingerprint and the --json result).</summary>
    public JsonObject ToJson() => new()
    {
        ["tokens"] = Tokens, ["seq"] = Sequence, ["batch"] = Batch, ["grad_accum"] = GradAccum,
        ["lr"] = LearningRate.ToString("R", CultureInfo.InvariantCulture), ["warmup"] = Warmup,
        ["schedule"] = Schedule.ToString().ToLowerInvariant(), ["min_lr_ratio"] = MinLrRatio.ToString("R", CultureInfo.InvariantCulture),
        ["clip"] = Clip.ToString("R", CultureInfo.InvariantCulture), ["weight_decay"] = WeightDecay.ToString("R", CultureInfo.InvariantCulture),
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
    };
}
