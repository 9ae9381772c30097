namespace E3.Backends.Cpu;

/// <summary>
/// cos/sin tables for rotary embeddings, computed once per (θ, head_dim) and grown with the longest position seen.
/// Frequencies follow transformers exactly in fp32: inv_freq = 1 / θ^(2i/d), angle = pos · inv_freq.
/// </summary>
internal sealed class RopeTables
{
    readonly Lock _lock = new();
    readonly Dictionary<(float, int), Table> _tables = new();

    public Table Get(float theta, int headDim, int positions)
    {
        lock (_lock)
        {
            if (_tables.TryGetValue((theta, headDim), out var t) && t.Positions >= positions) return t;
            t = new Table(theta, headDim, Math.Max(positions, 2 * (t?.Positions ?? 0)));
            _tables[(theta, headDim)] = t;
            return t;
        }
    }

    internal sealed class Table
    {
        readonly float[] _cos, _sin;
        readonly int _half;

        public Table(float theta, int headDim, int positions)
        {
            _half = headDim / 2;
            Positions = positions;
            var invFreq = new float[_half];
            // theta^e in fp64 rounded once to fp32 (as kernels/rope.cu): the correctly rounded value torch's fp32 pow gives.
            for (int i = 0; i < _half; i++) invFreq[i] = 1f / (float)Math.Pow(theta, (2 * i) / (float)headDim);
            _cos = new float[positions * _half];
            _sin = new float[positions * _half];
            for (int p = 0; p < positions; p++)
                for (int i = 0; i < _half; i++)
                {
                    float angle = p * invFreq[i];
                    _cos[p * _half + i] = MathF.Cos(angle);
                    _sin[p * _half + i] = MathF.Sin(angle);
                }
        }

        public int Positions { get; }
        public ReadOnlySpan<float> Cos(int pos) => _cos.AsSpan(pos * _half, _half);
        public ReadOnlySpan<float> Sin(int pos) => _sin.AsSpan(pos * _half, _half);
    }
}
