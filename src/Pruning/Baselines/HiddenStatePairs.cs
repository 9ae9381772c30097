using E3.Model.Decoder;

namespace E3.Pruning.Baselines;

/// <summary>
/// Streams the hidden states of forward passes and averages, for every l, a function of cos(h_l, h_{l+span}) over
/// the chosen rows (every token, or the last token of each sequence). Only the last span + 1 states are kept, so the
/// memory is (span + 1)·B·T·hidden floats whatever the depth of the model.
/// </summary>
internal sealed class HiddenStatePairs : IHiddenStateObserver
{
    readonly int _span, _hidden, _sequenceLength;
    readonly bool _lastTokenOnly;
    readonly Func<double, double> _ofCosine;
    readonly float[][] _ring;
    readonly double[] _sums;
    readonly long[] _counts;

    /// <param name="layers">L: states 0..L arrive per forward.</param>
    /// <param name="span">Distance between the compared states (1: a layer's input and output).</param>
    /// <param name="hidden">Hidden size.</param>
    /// <param name="sequenceLength">T, to find each sequence's last row.</param>
    /// <param name="lastTokenOnly">Compare only each sequence's last token (else every token).</param>
    /// <param name="ofCosine">What is averaged, as a function of the cosine.</param>
    public HiddenStatePairs(int layers, int span, int hidden, int sequenceLength, bool lastTokenOnly, Func<double, double> ofCosine)
    {
        if (span < 1 || span > layers) throw new ArgumentOutOfRangeException(nameof(span), span, $"span must be in 1..{layers}");
        _span = span;
        _hidden = hidden;
        _sequenceLength = sequenceLength;
        _lastTokenOnly = lastTokenOnly;
        _ofCosine = ofCosine;
        _ring = new float[span + 1][];
        _sums = new double[layers - span + 1];
        _counts = new long[layers - span + 1];
    }

    public void Observe(int index, ReadOnlySpan<float> hidden)
    {
        int slot = index % _ring.Length;
        if (_ring[slot]?.Length != hidden.Length) _ring[slot] = new float[hidden.Length];
        hidden.CopyTo(_ring[slot]);
        if (index < _span) return;
        int start = index - _span;
        var earlier = _ring[start % _ring.Length];
        int rows = hidden.Length / _hidden;
        for (int r = _lastTokenOnly ? _sequenceLength - 1 : 0; r < rows; r += _lastTokenOnly ? _sequenceLength : 1)
        {
            double cos = Cosine(earlier.AsSpan(r * _hidden, _hidden), hidden.Slice(r * _hidden, _hidden));
            _sums[start] += _ofCosine(cos);
            _counts[start]++;
        }
    }

    /// <summary>The average for each l in 0..L − span.</summary>
    public double[] Means()
    {
        var means = new double[_sums.Length];
        for (int l = 0; l < means.Length; l++)
            means[l] = _counts[l] == 0 ? throw new InvalidOperationException("no hidden states were observed") : _sums[l] / _counts[l];
        return means;
    }

    /// <summary>cos in double, clamped to [−1, 1]; a zero vector counts as orthogonal to everything.</summary>
    static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double dot = 0, aa = 0, bb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            aa += (double)a[i] * a[i];
            bb += (double)b[i] * b[i];
        }
        double norms = Math.Sqrt(aa) * Math.Sqrt(bb);
        return norms == 0 ? 0 : Math.Clamp(dot / norms, -1, 1);
    }
}
