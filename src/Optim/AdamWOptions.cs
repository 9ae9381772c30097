namespace E3.Optim;

/// <summary>Hyper-parameters of decoupled-weight-decay Adam (Loshchilov &amp; Hutter), as torch.optim.AdamW defines them.</summary>
/// <param name="Beta1">Decay of the first moment.</param>
/// <param name="Beta2">Decay of the second moment.</param>
/// <param name="Epsilon">Added to √v̂ in the denominator.</param>
/// <param name="WeightDecay">Decoupled decay: θ ← θ − lr·λ·θ before the Adam update.</param>
internal sealed record AdamWOptions(double Beta1 = 0.9, double Beta2 = 0.999, double Epsilon = 1e-8, double WeightDecay = 0.0)
{
    /// <summary>Throws when a value is outside the range torch accepts.</summary>
    public void Validate()
    {
        if (!(Beta1 is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "beta1 must lie in [0, 1)");
        if (!(Beta2 is >= 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "beta2 must lie in [0, 1)");
        if (!(Epsilon > 0) || !double.IsFinite(Epsilon)) throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, "epsilon must be positive");
        if (!(WeightDecay >= 0) || !double.IsFinite(WeightDecay)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "weight decay must be ≥ 0");
    }
}
