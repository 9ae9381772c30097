namespace E3.Pruning.Masking;

/// <summary>How <see cref="TemperatureSchedule"/> moves from its start to its floor.</summary>
public enum AnnealKind
{
    /// <summary>tau0 * (tauMin / tau0)^(step / steps): a constant ratio per step.</summary>
    Exponential,

    /// <summary>tau0 + (tauMin - tau0) * step / steps.</summary>
    Linear,

    /// <summary>tauMin + (tau0 - tauMin) * (1 + cos(pi * step / steps)) / 2: flat at both ends.</summary>
    Cosine,
}

/// <summary>
/// The Gumbel temperature tau over the search: <see cref="Start"/> at step 0, <see cref="Floor"/> from step
/// <see cref="Steps"/> on, annealed by <see cref="Kind"/> in between.
/// </summary>
internal sealed record TemperatureSchedule
{
    /// <summary>Checks 0 &lt; floor &lt;= start (both finite) and steps &gt;= 1.</summary>
    public TemperatureSchedule(double start, double floor, long steps, AnnealKind kind)
    {
        if (!double.IsFinite(start) || start <= 0)
            throw new MaskSamplerException("temperature.start", start, "must be finite and > 0");
        if (!double.IsFinite(floor) || floor <= 0 || floor > start)
            throw new MaskSamplerException("temperature.floor", floor, $"must be finite, > 0 and <= start = {start}");
        if (steps < 1)
            throw new MaskSamplerException("temperature.steps", steps, "must be at least 1");
        if (!Enum.IsDefined(kind))
            throw new MaskSamplerException("temperature.kind", kind, "must be Exponential, Linear or Cosine");
        (Start, Floor, Steps, Kind) = (start, floor, steps, kind);
    }

    /// <summary>tau0, the temperature at step 0.</summary>
    public double Start { get; }

    /// <summary>tauMin, reached at <see cref="Steps"/> and kept afterwards.</summary>
    public double Floor { get; }

    /// <summary>Steps from <see cref="Start"/> to <see cref="Floor"/>.</summary>
    public long Steps { get; }

    /// <summary>The annealing curve.</summary>
    public AnnealKind Kind { get; }

    /// <summary>The temperature at <paramref name="step"/> (negative steps count as 0).</summary>
    public float At(long step)
    {
        var x = Math.Clamp((double)step / Steps, 0.0, 1.0);
        var tau = Kind switch
        {
            AnnealKind.Exponential => Start * Math.Pow(Floor / Start, x),
            AnnealKind.Linear => Start + (Floor - Start) * x,
            _ => Floor + (Start - Floor) * 0.5 * (1 + Math.Cos(Math.PI * x)),
        };
        // Rounding must not take tau below the floor (or to 0): clamp in double, then round.
        return (float)Math.Max(tau, Floor);
    }
}
