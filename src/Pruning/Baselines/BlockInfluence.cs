using E3.Model.Decoder;

namespace E3.Pruning.Baselines;

/// <summary>
/// ShortGPT's block influence (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
/// Expect"): BI_l = 1 − E_tokens[cos(h_l, h_{l+1})], h_l the hidden state entering layer l and h_{l+1} the one leaving
/// it, averaged over every token of the calibration set. A layer that barely turns the residual stream scores low
/// and is dropped first.
/// </summary>
internal static class BlockInfluence
{
    /// <summary>BI_l for every layer l of the full model.</summary>
    public static double[] Scores(DecoderModel model, CalibrationSet data, IProgress<BaselineProgress>? progress = null)
    {
        var c = model.Config;
        var pairs = new HiddenStatePairs(c.NumLayers, 1, c.HiddenSize, data.SequenceLength, lastTokenOnly: false, cos => cos);
        CalibrationPass.Observe(model, data, pairs, "block influence", progress);
        return pairs.Means().Select(meanCos => 1 - meanCos).ToArray();
    }
}
