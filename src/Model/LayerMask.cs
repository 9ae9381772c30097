using System.Globalization;

namespace E3.Model;

/// <summary>
/// One gate per decoder layer: layer l computes h + m_l·Δ_l(h). A gate of exactly 0 skips the layer: it does
/// no work and keeps no KV cache. Fractional gates are allowed (the mask search trains through them).
/// </summary>
public sealed class LayerMask
{
    readonly float[] _gates;

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

    public int Count => _gates.Length;
    public float this[int layer] => _gates[layer];
    public ReadOnlySpan<float> Gates => _gates;
    public bool IsSkipped(int layer) => _gates[layer] == 0f;
    public IEnumerable<int> Dropped => Enumerable.Range(0, Count).Where(IsSkipped);
    public IEnumerable<int> Kept => Enumerable.Range(0, Count).Where(i => !IsSkipped(i));
    public int KeptCount => Kept.Count();

    public override string ToString() => $"keep {KeptCount}/{Count}, drop [{string.Join(",", Dropped)}]";
}
