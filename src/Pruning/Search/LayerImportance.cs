using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distillation;

namespace E3.Pruning.Search;

/// <summary>Per-layer importance from the model's own predictions, and its mapping to initial mask logits.</summary>
internal static class LayerImportance
{
    /// <summary>Initial logits lie in [−<see cref="LogitRange"/>, +LogitRange]: a prior the search can still overturn.</summary>
    public const double LogitRange = 4.0;

    /// <summary>
    /// Drop-one-layer KL: for each layer l, the mean over every token of the calibration batches of
    /// KL(p_full ‖ p_without l), forward KL at temperature 1, in nats. <paramref name="batches"/> are [B·T] ids each
    /// (B = <paramref name="batchSize"/> sequences of T), run through the training forward with all gates 1 (the
    /// teacher) and with gate l alone at 0. <paramref name="trainer"/> is <paramref name="model"/>'s (the search's own,
    /// so that its buffers serve here too rather than a second set beside them).
    /// </summary>
    public static double[] DropOneKl(DecoderModel model, GatedDecoderTrainer trainer, IReadOnlyList<int[]> batches, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(model);
        int layers = model.Config.NumLayers;
        var dropOne = Enumerable.Range(0, layers).Select(l =>
        {
            var g = Enumerable.Repeat(1f, layers).ToArray();
            g[l] = 0f;
            return g;
        }).ToArray();
        return MaskKl(model, trainer, batches, batchSize, dropOne);
    }

    /// <summary>
    /// For each gate vector of <paramref name="gateSets"/>, the mean over every token of the calibration batches of
    /// KL(p_full ‖ p_gated), forward KL at temperature 1, in nats (the teacher is the same model with all gates 1),
    /// through <paramref name="trainer"/>, a frozen or training trainer of <paramref name="model"/>: only its forward runs.
    /// </summary>
    public static double[] MaskKl(DecoderModel model, GatedDecoderTrainer trainer, IReadOnlyList<int[]> batches, int batchSize, IReadOnlyList<float[]> gateSets)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(gateSets);
        if (batches.Count == 0) throw new ArgumentException("mask KL needs at least one calibration batch", nameof(batches));
        int layers = model.Config.NumLayers;
        foreach (var g in gateSets)
            if (g.Length != layers) throw new ArgumentException($"a gate set has {g.Length} gates; the model has {layers} layers", nameof(gateSets));
        var plainKl = new KdOptions { Weighting = EntropyWeighting.None };
        var sums = new double[gateSets.Count];
        long tokens = 0;
        var pass = new GatedKdPass(model, trainer);
        foreach (var batch in batches)
        {
            var teacher = pass.Teacher(batch, batchSize);
            try
            {
                for (int i = 0; i < gateSets.Count; i++)
                {
                    // With weights off and λ = 1 the loss is Σ_t KL_t / N; the gradient it leaves is unused.
                    var loss = pass.Loss(batch, batchSize, gateSets[i], teacher, plainKl);
                    sums[i] += loss.Distillation * loss.ValidTokens;
                }
            }
            finally
            {
                (teacher as IDisposable)?.Dispose();
            }
            tokens += batch.Length;
        }
        return sums.Select(s => s / tokens).ToArray();
    }

    /// <summary>
    /// Initial mask logits from importances: v_l = max(ln I_l, ln max I − 2R), α_l = v_l − (max v + min v) / 2, with
    /// R = <see cref="LogitRange"/>. So α lies in [−R, R]; layers within a factor e^{2R} ≈ 3000 of the most important
    /// keep their exact log ratios (α_i − α_j = ln(I_i / I_j)), and layers below that floor (including KL 0) share −R.
    /// Log ratios suit Gumbel-TopK, which depends on logit differences only: a layer ten times as important starts
    /// 2.3 logits ahead, about twice the Gumbel noise's standard deviation (π/√6 ≈ 1.28). The bounded range keeps
    /// the prior from saturating the sampler, so the search can still overturn it. Equal importances give zeros.
    /// </summary>
    public static float[] ToLogits(ReadOnlySpan<double> importance)
    {
        if (importance.Length == 0) throw new ArgumentException("no layers", nameof(importance));
        double max = 0;
        for (int i = 0; i < importance.Length; i++)
        {
            if (!double.IsFinite(importance[i]) || importance[i] < 0)
                throw new ArgumentException($"importance[{i}] = {importance[i]} must be finite and >= 0", nameof(importance));
            max = Math.Max(max, importance[i]);
        }
        if (max == 0) return new float[importance.Length];
        double floor = Math.Log(max) - 2 * LogitRange;
        var logs = new double[importance.Length];
        for (int i = 0; i < logs.Length; i++) logs[i] = importance[i] > 0 ? Math.Max(Math.Log(importance[i]), floor) : floor;
        double middle = (logs.Max() + logs.Min()) / 2;
        return logs.Select(v => (float)(v - middle)).ToArray();
    }
}
