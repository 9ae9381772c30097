namespace E3.Pruning.Baselines;

/// <summary>How many of a model's layers to drop: at least one, and at least one kept.</summary>
public readonly record struct PruneTarget
{
    PruneTarget(int layers, int drop)
    {
        Layers = layers;
        Drop = drop;
    }

    /// <summary>L, the model's layer count.</summary>
    public int Layers { get; }

    /// <summary>n, the number of layers to drop (1 ≤ n ≤ L − 1).</summary>
    public int Drop { get; }

    /// <summary>k = L − n, the number of layers kept.</summary>
    public int Keep => Layers - Drop;

    /// <summary>Drops round(ratio·L) layers (halves round up, as <see cref="E3.Model.LayerMask.DropLast"/> does).</summary>
    public static PruneTarget FromRatio(int layers, double ratio)
    {
        if (!(ratio > 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), ratio, $"--prune: {ratio} must be in (0, 1)");
        int drop = (int)Math.Round(ratio * layers, MidpointRounding.AwayFromZero);
        if (drop < 1 || drop >= layers)
            throw new ArgumentOutOfRangeException(nameof(ratio), ratio, $"--prune: {ratio} of {layers} layers drops {drop}; it must drop between 1 and {layers - 1}");
        return new PruneTarget(layers, drop);
    }

    /// <summary>Keeps <paramref name="keep"/> layers.</summary>
    public static PruneTarget FromKeep(int layers, int keep)
    {
        if (keep < 1 || keep >= layers)
            throw new ArgumentOutOfRangeException(nameof(keep), keep, $"--keep: {keep} is out of range 1..{layers - 1} for a model with {layers} layers");
        return new PruneTarget(layers, layers - keep);
    }
}
