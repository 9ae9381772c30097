using E3.Model.Decoder;
using E3.Pruning.Masks;

namespace E3.Pruning.Baselines;

/// <summary>A baseline's mask and, for the methods that compute them, the numbers behind the choice.</summary>
/// <param name="Mask">What <c>e3 baseline</c> writes to mask.json.</param>
/// <param name="BlockDistances">angular: d(l, l+n) for l = 0..L − n; null for the other methods.</param>
/// <param name="Greedy">drop-one-kl: the greedy path; null for the other methods.</param>
public sealed record BaselineResult(MaskFile Mask, IReadOnlyList<double>? BlockDistances, GreedyKlResult? Greedy);

/// <summary>Runs one baseline on a model and returns its mask in the format the rest of the pipeline reads.</summary>
public static class BaselinePruner
{
    /// <summary>
    /// Chooses <paramref name="target"/>.Drop layers to drop with <paramref name="method"/>. mask.json records the
    /// method, per-layer <c>scores</c> where the method has one per layer (bi: BI_l; drop-one-kl: each layer's KL when
    /// removed alone), the calibration tokens used, the seed (data windows, or the shuffle for random), and for
    /// drop-one-kl the greedy path as <c>loss_history</c> (step i: KL after i layers dropped).
    /// </summary>
    /// <param name="data">Calibration batches; required unless the method is last or random.</param>
    /// <param name="checkpoint">
    /// drop-one-kl only (the other methods are one pass): a <see cref="GreedyKlCheckpoint"/> file rewritten after every
    /// greedy step, and, with <paramref name="resume"/>, read first when it exists so the run continues from it.
    /// </param>
    public static BaselineResult Run(DecoderModel model, BaselineMethod method, PruneTarget target, CalibrationSet? data, ulong seed,
        IProgress<BaselineProgress>? progress = null, string? checkpoint = null, bool resume = false)
    {
        var config = model.Config;
        if (target.Layers != config.NumLayers)
            throw new ArgumentException($"the prune target is for {target.Layers} layers; the model at {config.SourcePath} has {config.NumLayers}");
        if (method.NeedsData() && data == null) throw new ArgumentNullException(nameof(data), $"{method.Name()} needs calibration data");
        int n = target.Drop, layers = config.NumLayers;
        long tokens = method.NeedsData() ? data!.Tokens : 0;
        IReadOnlyList<double>? scores = null, distances = null;
        GreedyKlResult? greedy = null;
        int[] drop;
        switch (method)
        {
            case BaselineMethod.BlockInfluence:
                scores = BlockInfluence.Scores(model, data!, progress);
                drop = LayerChoice.Lowest(scores, n);
                break;
            case BaselineMethod.Angular:
                distances = AngularDistance.Distances(model, data!, n, progress);
                drop = LayerChoice.Block(AngularDistance.BestStart(distances), n);
                break;
            case BaselineMethod.Last:
                drop = LayerChoice.Last(layers, n);
                break;
            case BaselineMethod.Random:
                drop = LayerChoice.Seeded(layers, n, seed);
                break;
            case BaselineMethod.DropOneKl:
                greedy = RunGreedy(model, data!, n, progress, checkpoint, resume);
                scores = greedy.DropOneKl;
                drop = greedy.Order.ToArray();
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(method), method, "unknown baseline");
        }
        var mask = MaskFile.For(config, method.Name(), Enumerable.Range(0, layers).Except(drop)) with
        {
            Scores = scores,
            Tokens = tokens,
            Seed = method == BaselineMethod.Last ? null : seed,
            Steps = greedy?.Order.Count ?? 0,
            LossHistory = greedy?.KlAfterStep.Select((kl, i) => new LossPoint(i + 1, kl)).ToArray() ?? [],
        };
        return new BaselineResult(mask, distances, greedy);
    }

    static GreedyKlResult RunGreedy(DecoderModel model, CalibrationSet data, int drop, IProgress<BaselineProgress>? progress, string? checkpoint, bool resume)
    {
        if (checkpoint == null) return GreedyDropOneKl.Run(model, data, drop, progress);
        var (configHash, calibrationHash) = GreedyKlCheckpoint.Identity(model.Config, data);
        var start = resume && File.Exists(checkpoint) ? GreedyKlCheckpoint.Load(checkpoint, model.Config, data, drop).State : null;
        return GreedyDropOneKl.Run(model, data, drop, progress, start,
            state => new GreedyKlCheckpoint(configHash, drop, calibrationHash, state).Save(checkpoint));
    }
}
