using E3.Model.Decoder;

namespace E3.Pruning.Baselines;

/// <summary>
/// Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers": for a block of n layers starting at l,
/// d(l, l+n) = (1/π)·arccos(cos(x_T^(l), x_T^(l+n))), x^(l) the hidden state entering layer l and x_T its value at the
/// final token T of a sequence. As in the paper, the distance is taken at each calibration sequence's last token and
/// the distances (not the cosines) are averaged over sequences; the block [l*, l*+n) with the smallest average is
/// dropped. The last token has attended to the whole window, so it is the state that carries the most context.
/// </summary>
internal static class AngularDistance
{
    /// <summary>d(l, l+n) for l = 0..L − n on the full model.</summary>
    public static double[] Distances(DecoderModel model, CalibrationSet data, int blockSize, IProgress<BaselineProgress>? progress = null)
    {
        var c = model.Config;
        if (blockSize < 1 || blockSize >= c.NumLayers)
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, $"block size must be in 1..{c.NumLayers - 1}");
        var pairs = new HiddenStatePairs(c.NumLayers, blockSize, c.HiddenSize, data.SequenceLength, lastTokenOnly: true, cos => Math.Acos(cos) / Math.PI);
        CalibrationPass.Observe(model, data, pairs, "angular distance", progress);
        return pairs.Means();
    }

    /// <summary>l* = argmin d(l, l+n); on a tie the deeper block (larger l), as deeper layers are the usual redundancy.</summary>
    public static int BestStart(IReadOnlyList<double> distances)
    {
        int best = 0;
        for (int l = 1; l < distances.Count; l++)
            if (distances[l] <= distances[best]) best = l;
        return best;
    }
}
