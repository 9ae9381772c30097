using System.Globalization;

namespace E3.Model;

/// <summary>
/// One gate per decoder layer: layer l computes h + m_l·Δ_l(h). A gate of exactly 0 skips the layer: it does
/// no work and keeps no KV cache. Fractional gates are allowed (the mask search trains through them).
/// </summary>
public sealed class LayerMask
{
    readonly float[] _gates;

    /// <summary>A mask with one gate per layer, in layer order; at least one gate, all finite. The gates are copied.</summary>
    public LayerMask(ReadOnlySpan<float> gates)
    {
        if (gates.Length == 0) throw new ArgumentException("a layer mask needs at least one layer", nameof(gates));
        for (int i = 0; i < gates.Length; i++)
            if (!float.IsFinite(gates[i])) throw new ArgumentException($"gate {i} is {gates[i]}; gates must be finite", nameof(gates));
        _gates = gates.ToArray();
    }

    /// <summary>Every layer kept with gate 1.</summary>
    public static LayerMask All(int layers) => new(Enumerable.Repeat(1f, layers).ToArray());

    /// <summary>Gate 0 on the given layers, 1 elsewhere. Indices must be within [0, layers).</summary>
    public static LayerMask Dropping(int layers, IEnumerable<int> dropped)
    {
        var g = Enumerable.Repeat(1f, layers).ToArray();
        foreach (int i in dropped)
        {
            if ((uint)i >= (uint)layers) throw new ArgumentOutOfRangeException(nameof(dropped), $"layer index {i} is out of range for a model with {layers} layers (valid: 0..{layers - 1})");
            g[i] = 0f;
        }
        return new LayerMask(g);
    }

    /// <summary>Drops the last round(ratio·L) layers: the default when no learned mask is given.</summary>
    public static LayerMask DropLast(int layers, double ratio)
    {
        if (!(ratio >= 0 && ratio < 1)) throw new ArgumentOutOfRangeException(nameof(ratio), $"prune ratio {ratio} must be in [0, 1)");
        int n = (int)Math.Round(ratio * layers, MidpointRounding.AwayFromZero);
        return Dropping(layers, Enumerable.Range(layers - n, n));
    }

    /// <summary>Parses "3,7,12" (layer indices to drop).</summary>
    public static LayerMask ParseDropList(int layers, string? list)
    {
        if (string.IsNullOrWhiteSpace(list)) return All(layers);
        var idx = new List<int>();
        // "1,,2" is a typo, not two layers: every comma separates one index.
        foreach (var part in list.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i))
                throw new FormatException($"--drop: '{part}' in '{list}' is not a layer index");
            if ((uint)i >= (uint)layers)
                throw new ArgumentException($"--drop: layer {i} is out of range for a model with {layers} layers (valid: 0..{layers - 1})");
            idx.Add(i);
        }
        return Dropping(layers, idx);
    }

    /// <summary>Number of layers (gates).</summary>
    public int Count => _gates.Length;
    /// <summary>The gate m_l of layer <paramref name="layer"/>.</summary>
    public float this[int layer] => _gates[layer];
    /// <summary>Every gate, in layer order.</summary>
    public ReadOnlySpan<float> Gates => _gates;
    /// <summary>Whether the layer's gate is exactly 0, so it does no work.</summary>
    public bool IsSkipped(int layer) => _gates[layer] == 0f;
    /// <summary>Indices of the skipped layers, ascending.</summary>
    public IEnumerable<int> Dropped => Enumerable.Range(0, Count).Where(IsSkipped);
    /// <summary>Indices of the layers that run (gate not 0), ascending.</summary>
    public IEnumerable<int> Kept => Enumerable.Range(0, Count).Where(i => !IsSkipped(i));
    /// <summary>Number of layers that run.</summary>
    public int KeptCount => Kept.Count();

    /// <summary>A summary such as "keep 6/8, drop [3,5]".</summary>
    public override string ToString() => $"keep {KeptCount}/{Count}, drop [{string.Join(",", Dropped)}]";
}
