namespace E3.Backends.Numerics;

/// <summary>
/// The order kernels/sampling.cu ranks a logits row in, for the host: the larger value first, NaN above every number,
/// the lower index on ties. The host's token draws and the teacher cache's top-K both select by it, as their kernels do.
/// </summary>
internal static class RowOrder
{
    /// <summary>Whether (a, ia) comes before (b, ib).</summary>
    public static bool Before(double a, int ia, double b, int ib)
    {
        bool nanA = double.IsNaN(a), nanB = double.IsNaN(b);
        if (nanA || nanB) return nanA && (!nanB || ia < ib);
        return a > b || (a == b && ia < ib);
    }

    /// <summary>
    /// The indices of the K = <paramref name="best"/>.Length first values of <paramref name="row"/>[i] · <paramref name="scale"/>
    /// (one fp32 product, as the kernel forms it), in order. K must not exceed the row's length.
    /// </summary>
    public static void TopK(ReadOnlySpan<float> row, float scale, Span<int> best)
    {
        int k = best.Length;
        if (k > row.Length) throw new ArgumentException($"top-{k} of a row of {row.Length} values", nameof(best));
        int count = 0;
        for (int i = 0; i < row.Length; i++)
        {
            float z = row[i] * scale;
            // Insertion into the ordered candidates; most values of a vocabulary row stop at this first test.
            if (count == k && !Before(z, i, row[best[k - 1]] * scale, best[k - 1])) continue;
            int at = count < k ? count++ : k - 1;
            while (at > 0 && Before(z, i, row[best[at - 1]] * scale, best[at - 1]))
            {
                best[at] = best[at - 1];
                at--;
            }
            best[at] = i;
        }
    }
}
