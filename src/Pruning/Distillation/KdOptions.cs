namespace E3.Pruning.Distillation;

/// <summary>Which way the per-token divergence runs.</summary>
public enum KlDirection
{
    /// <summary>KL(p‖q) = Σ p (log p − log q): the student covers the teacher's mass (the default).</summary>
    Forward,

    /// <summary>KL(q‖p) = Σ q (log q − log p): the student seeks the teacher's modes.</summary>
    Reverse,
}

/// <summary>How the teacher's entropy H_t turns into a per-token weight w_t (a constant in the backward pass).</summary>
public enum EntropyWeighting
{
    /// <summary>w_t = H_t / mean(H) over valid tokens (1 for every token when that mean is 0). The default.</summary>
    Linear,

    /// <summary>w_t = N · softmax(H / β) over the N valid tokens, so the weights also average to 1.</summary>
    Softmax,

    /// <summary>w_t = 1.</summary>
    None,
}

/// <summary>
/// Settings of the entropy-weighted distillation loss
/// L = λ · τ² · Σ_t w_t·KL_t / N + (1 − λ) · Σ_t CE_t / N over the N valid tokens.
/// </summary>
public sealed record KdOptions
{
    /// <summary>τ: both distributions are softmax(z / τ). Must be finite and positive.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Forward KL(p‖q) or reverse KL(q‖p).</summary>
    public KlDirection Direction { get; init; } = KlDirection.Forward;

    /// <summary>The entropy weighting mode; <see cref="EntropyWeighting.Linear"/> unless set.</summary>
    public EntropyWeighting Weighting { get; init; } = EntropyWeighting.Linear;

    /// <summary>β of <see cref="EntropyWeighting.Softmax"/>.</summary>
    public double SoftmaxBeta { get; init; } = 1.0;

    /// <summary>Lower clamp applied to every weight after the mode (none when null).</summary>
    public double? MinWeight { get; init; }

    /// <summary>Upper clamp applied to every weight after the mode (none when null).</summary>
    public double? MaxWeight { get; init; }

    /// <summary>λ in [0, 1]: 1 is pure distillation; below 1 mixes in the cross-entropy on the labels (τ = 1).</summary>
    public double KdFraction { get; init; } = 1.0;

    /// <summary>A label equal to this marks a padding token: no loss, zero gradient, not counted in N.</summary>
    public int IgnoreIndex { get; init; } = -100;

    /// <summary>
    /// When false (the default) a NaN or infinite logit is an error naming the row and column. When true such a
    /// row is treated like an ignored token (costs one extra read of each student row). Student rows can only be
    /// masked by <see cref="EntropyKdLoss"/>; in <see cref="EntropyKdLmHead"/> the logits exist one chunk at a time,
    /// after the weights are fixed, so a non-finite student logit there is always an error.
    /// </summary>
    public bool MaskNonFinite { get; init; }

    /// <summary>
    /// Largest difference between teacher and student vocabulary widths accepted as padding columns (Qwen pads
    /// 151,936 to 152,064); the wider side's extra columns are dropped. A larger difference is an error.
    /// </summary>
    public int MaxPaddingColumns { get; init; } = 256;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (!double.IsFinite(Temperature) || Temperature <= 0)
            throw new ArgumentException($"KdOptions.Temperature = {Temperature}: must be finite and > 0");
        if (!double.IsFinite(SoftmaxBeta) || SoftmaxBeta <= 0)
            throw new ArgumentException($"KdOptions.SoftmaxBeta = {SoftmaxBeta}: must be finite and > 0");
        if (!(KdFraction >= 0 && KdFraction <= 1))
            throw new ArgumentException($"KdOptions.KdFraction = {KdFraction}: must be in [0, 1]");
        if (MinWeight is { } lo && !(double.IsFinite(lo) && lo >= 0))
            throw new ArgumentException($"KdOptions.MinWeight = {lo}: must be finite and >= 0");
        if (MaxWeight is { } hi && !(double.IsFinite(hi) && hi > 0))
            throw new ArgumentException($"KdOptions.MaxWeight = {hi}: must be finite and > 0");
        if (MinWeight is { } a && MaxWeight is { } b && a > b)
            throw new ArgumentException($"KdOptions.MinWeight = {a} exceeds MaxWeight = {b}");
        if (MaxPaddingColumns < 0)
            throw new ArgumentException($"KdOptions.MaxPaddingColumns = {MaxPaddingColumns}: must be >= 0");
        if (!Enum.IsDefined(Direction)) throw new ArgumentException($"KdOptions.Direction = {Direction}: unknown");
        if (!Enum.IsDefined(Weighting)) throw new ArgumentException($"KdOptions.Weighting = {Weighting}: unknown");
    }
}

/// <summary>The value of the loss and its parts, all summed in double.</summary>
/// <param name="Loss">λ·KD + (1 − λ)·CE.</param>
/// <param name="Distillation">KD = τ² · Σ w_t·KL_t / N.</param>
/// <param name="CrossEntropy">CE = Σ CE_t / N (0 when no labels were given).</param>
/// <param name="ValidTokens">N: tokens neither ignored nor masked.</param>
internal readonly record struct KdLoss(double Loss, double Distillation, double CrossEntropy, int ValidTokens);
