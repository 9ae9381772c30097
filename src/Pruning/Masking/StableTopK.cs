namespace E3.Pruning.Masking;

/// <summary>
/// Orders layers by descending score, ties going to the lower layer index: the order whose first k entries are
/// the kept layers (the kernel computes the same thing as rank_i = #{j : s_j &gt; s_i or (s_j == s_i and j &lt; i)}).
/// </summary>
public static class StableTopK
{
    /// <summary>Fills <paramref name="order"/> with 0..n-1 sorted by (score descending, index ascending).</summary>
    public static void Order(ReadOnlySpan<double> scores, Span<int> order)
    {
        if (order.Length != scores.Length)
            throw new ArgumentException($"order has {order.Length} entries for {scores.Length} scores", nameof(order));
        for (var i = 0; i < order.Length; i++)
            order[i] = i;
        // Insertion sort: stable (equal scores keep index order) and fast for the <= 256 layers of a mask.
        for (var i = 1; i < order.Length; i++)
        {
            var item = order[i];
            var score = scores[item];
            var j = i - 1;
            while (j >= 0 && scores[order[j]] < score)
            {
                order[j + 1] = order[j];
                j--;
            }
            order[j + 1] = item;
        }
    }
}

/// <summary>The mask the search finally keeps: the top-k layers of the logits, without noise.</summary>
public static class DeterministicMask
{
    /// <summary>Writes 1 for the <paramref name="keep"/> largest logits (ties to the lower index) and 0 elsewhere.</summary>
    public static void TopK(ReadOnlySpan<float> logits, int keep, Span<float> mask)
    {
        new GumbelTopKSpec(logits.Length, keep, 1, 1f, 0, 0).Validate(logits);
        if (mask.Length != logits.Length)
            throw new MaskSamplerException("mask.Length", mask.Length, $"must equal layers = {logits.Length}");
        Span<double> scores = stackalloc double[logits.Length];
        Span<int> order = stackalloc int[logits.Length];
        for (var i = 0; i < logits.Length; i++)
            scores[i] = logits[i];
        StableTopK.Order(scores, order);
        mask.Clear();
        foreach (var layer in order[..keep])
            mask[layer] = 1f;
    }
}
