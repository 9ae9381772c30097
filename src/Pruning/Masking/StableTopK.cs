using System.Runtime.Intrinsics;

namespace E3.Pruning.Masking;

/// <summary>
/// Orders layers by descending score, ties going to the lower layer index: the order whose first k entries are
/// the kept layers. Computed as the kernel does, rank_i = #{j &lt; i : s_j &gt;= s_i} + #{j &gt; i : s_j &gt; s_i}: a
/// strict total order, so the ranks are a permutation, and counting is branch-free (a sort's data-dependent
/// branches mispredict on random scores).
/// </summary>
internal static class StableTopK
{
    /// <summary>Fills <paramref name="order"/> with 0..n-1 sorted by (score descending, index ascending); scores must not be NaN.</summary>
    public static void Order(ReadOnlySpan<double> scores, Span<int> order)
    {
        if (order.Length != scores.Length)
            throw new ArgumentException($"order has {order.Length} entries for {scores.Length} scores", nameof(order));
        for (var i = 0; i < scores.Length; i++)
            if (double.IsNaN(scores[i]))
                throw new ArgumentException($"scores[{i}] is NaN: NaN has no rank", nameof(scores));
        if (!TryOrderWithoutTies(scores, order))
            for (var i = 0; i < scores.Length; i++)
                order[Rank(scores, i)] = i;
    }

    // rank_i = #{j : s_j > s_i} is the tie-aware rank whenever no two scores are equal, which the ranks being
    // a permutation proves (a tie gives two layers one rank). Four layers per pass over the scores, so each
    // vector load serves four comparisons. Random fp64 scores essentially never tie; ties go the slow way.
    private static bool TryOrderWithoutTies(ReadOnlySpan<double> scores, Span<int> order)
    {
        const int Lanes = 4;
        var n = scores.Length;
        if (!Vector256.IsHardwareAccelerated || n < Lanes || n % Lanes != 0)
            return false;
        order.Fill(-1);
        var vectors = System.Runtime.InteropServices.MemoryMarshal.Cast<double, Vector256<double>>(scores);
        for (var i = 0; i < n; i += Lanes)
        {
            var a = Vector256.Create(scores[i]);
            var b = Vector256.Create(scores[i + 1]);
            var c = Vector256.Create(scores[i + 2]);
            var d = Vector256.Create(scores[i + 3]);
            Vector256<long> ra = default, rb = default, rc = default, rd = default;
            foreach (var v in vectors)
            {
                ra += Vector256.GreaterThan(v, a).AsInt64();
                rb += Vector256.GreaterThan(v, b).AsInt64();
                rc += Vector256.GreaterThan(v, c).AsInt64();
                rd += Vector256.GreaterThan(v, d).AsInt64();
            }
            if (!Place(order, ra, i) || !Place(order, rb, i + 1) || !Place(order, rc, i + 2) || !Place(order, rd, i + 3))
                return false;
        }
        return true;
    }

    private static bool Place(Span<int> order, Vector256<long> negativeCounts, int layer)
    {
        var rank = (int)-Vector256.Sum(negativeCounts);
        if (order[rank] >= 0)
            return false;
        order[rank] = layer;
        return true;
    }

    private static int Rank(ReadOnlySpan<double> scores, int i)
    {
        var score = scores[i];
        return CountAtLeast(scores[..i], score, strict: false) + CountAtLeast(scores[(i + 1)..], score, strict: true);
    }

    // #{j : s_j > score} when strict, #{j : s_j >= score} otherwise.
    private static int CountAtLeast(ReadOnlySpan<double> scores, double score, bool strict)
    {
        var j = 0;
        var count = 0;
        if (Vector256.IsHardwareAccelerated && scores.Length >= Vector256<double>.Count)
        {
            var threshold = Vector256.Create(score);
            var hits = Vector256<long>.Zero; // compare masks are all-ones (-1) per hit lane
            var last = scores.Length - Vector256<double>.Count;
            if (strict)
                for (; j <= last; j += Vector256<double>.Count)
                    hits += Vector256.GreaterThan(Vector256.Create(scores.Slice(j, Vector256<double>.Count)), threshold).AsInt64();
            else
                for (; j <= last; j += Vector256<double>.Count)
                    hits += Vector256.GreaterThanOrEqual(Vector256.Create(scores.Slice(j, Vector256<double>.Count)), threshold).AsInt64();
            count = (int)-Vector256.Sum(hits);
        }
        for (; j < scores.Length; j++)
            if (strict ? scores[j] > score : scores[j] >= score)
                count++;
        return count;
    }
}

/// <summary>The mask the search finally keeps: the top-k layers of the logits, without noise.</summary>
internal static class DeterministicMask
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
