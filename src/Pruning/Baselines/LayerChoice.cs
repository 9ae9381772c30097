using E3.Backends.Numerics;
using E3.Pruning.Masking;

namespace E3.Pruning.Baselines;

/// <summary>The selection rules that turn scores, or nothing, into the set of dropped layers.</summary>
internal static class LayerChoice
{
    /// <summary>The <paramref name="count"/> layers with the lowest scores; on a tie the higher index is dropped first.</summary>
    public static int[] Lowest(IReadOnlyList<double> scores, int count) =>
        Enumerable.Range(0, scores.Count).OrderBy(l => scores[l]).ThenByDescending(l => l).Take(count).Order().ToArray();

    /// <summary>The last <paramref name="count"/> of <paramref name="layers"/>.</summary>
    public static int[] Last(int layers, int count) => Enumerable.Range(layers - count, count).ToArray();

    /// <summary>The contiguous block [start, start + count).</summary>
    public static int[] Block(int start, int count) => Enumerable.Range(start, count).ToArray();

    /// <summary>
    /// The first <paramref name="count"/> entries of a Fisher–Yates shuffle of 0..L−1 whose draws come from
    /// Philox-4x32-10 keyed by the seed (counter = (i, 0, 0, "RAND")): the same seed gives the same layers on every
    /// machine and .NET version, unlike <see cref="System.Random"/>, whose algorithm may change. Each draw is a 64-bit
    /// value reduced modulo i + 1; the bias this leaves is below 2⁻⁵⁰ for any real layer count.
    /// </summary>
    public static int[] Seeded(int layers, int count, ulong seed)
    {
        var order = Enumerable.Range(0, layers).ToArray();
        for (int i = layers - 1; i > 0; i--)
        {
            var r = Philox4x32.Generate((uint)i, 0, 0, 0x52414E44u, (uint)seed, (uint)(seed >> 32));
            ulong draw = ((ulong)r.X1 << 32) | r.X0;
            int j = (int)(draw % (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order.Take(count).Order().ToArray();
    }
}
