using E3.Pruning.Masks;

namespace E3.Pruning.Search;

/// <summary>
/// Where a search stands after <see cref="Step"/> steps: α and the per-step history. The optimizer state lives in
/// <see cref="MaskSearch"/> and is checkpointed beside this. Nothing else is needed to resume: every step's data and
/// Gumbel noise are keyed by (seed, step), so the step number is the whole RNG position.
/// </summary>
public sealed class SearchState
{
    /// <param name="alpha">The mask logits (copied).</param>
    public SearchState(ReadOnlySpan<float> alpha, double[]? importance = null)
    {
        if (alpha.IsEmpty) throw new ArgumentException("α has no layers", nameof(alpha));
        Alpha = alpha.ToArray();
        Importance = importance;
    }

    /// <summary>α, one logit per layer, updated in place by each step.</summary>
    public float[] Alpha { get; }

    /// <summary>The drop-one KL importance α was initialised from (null for a uniform start or a resumed run).</summary>
    public double[]? Importance { get; }

    /// <summary>Steps completed; the next step to run.</summary>
    public long Step { get; internal set; }

    readonly List<LossPoint> _lossHistory = [];
    readonly List<float[]> _keepProbability = [];

    /// <summary>Mean distillation loss over the samples of each step.</summary>
    public IReadOnlyList<LossPoint> LossHistory => _lossHistory;

    /// <summary>
    /// Each completed step's probability per layer of being kept by a Gumbel-TopK draw under the updated α, at that
    /// step's keep count (estimated from hard draws; see <see cref="MaskSearch.KeepProbabilityDraws"/>). It sums to the
    /// keep count and is what the plot draws.
    /// </summary>
    public IReadOnlyList<float[]> KeepProbability => _keepProbability;

    // Only the search and its checkpoint reader add to the histories; a caller reads them.
    internal void RecordLoss(LossPoint loss) => _lossHistory.Add(loss);

    internal void RecordKeepProbability(float[] perLayer) => _keepProbability.Add(perLayer);
}
