using E3.Model;
using E3.Model.Decoder;

namespace E3.Pruning.Baselines;

/// <summary>What <see cref="GreedyDropOneKl.Run"/> found.</summary>
/// <param name="Order">Layers in the order they were dropped.</param>
/// <param name="KlAfterStep">Mean KL(full‖pruned) per token once Order[0..i] are dropped.</param>
/// <param name="DropOneKl">Step one's KL for every layer: the KL when only that layer is removed.</param>
public sealed record GreedyKlResult(IReadOnlyList<int> Order, IReadOnlyList<double> KlAfterStep, IReadOnlyList<double> DropOneKl);

/// <summary>
/// Greedy drop-one-KL: n times, remove the layer whose removal, with those already removed, gives the smallest mean
/// KL(full‖pruned) over the calibration tokens. Each step costs one teacher and one student forward per remaining
/// layer per batch; the teacher's logits are recomputed per batch rather than cached, so memory stays at one batch.
/// </summary>
internal static class GreedyDropOneKl
{
    /// <summary>Drops <paramref name="count"/> layers; ties go to the higher layer index.</summary>
    /// <param name="resumeFrom">The state after some finished steps (a checkpoint); the run continues from there.</param>
    /// <param name="stepFinished">Called with the state after every step (to write a checkpoint).</param>
    public static GreedyKlResult Run(DecoderModel model, CalibrationSet data, int count, IProgress<BaselineProgress>? progress = null,
        GreedyKlResult? resumeFrom = null, Action<GreedyKlResult>? stepFinished = null)
    {
        int layers = model.Config.NumLayers, vocab = model.Config.VocabSize;
        if (count < 1 || count >= layers) throw new ArgumentOutOfRangeException(nameof(count), count, $"must drop 1..{layers - 1} layers");
        var dropped = new List<int>(resumeFrom?.Order ?? []);
        var klAfter = new List<double>(resumeFrom?.KlAfterStep ?? []);
        double[]? dropOne = resumeFrom is { Order.Count: > 0 } ? resumeFrom.DropOneKl.ToArray() : null;
        if (dropped.Count > count) throw new ArgumentException($"the resumed state has dropped {dropped.Count} layers; the run drops {count}", nameof(resumeFrom));
        var full = LayerMask.All(layers);
        long total = 0, done = 0;
        for (int s = 0; s < count; s++)
        {
            total += (long)data.Batches.Count * (layers - s + 1);
            if (s < dropped.Count) done = total;
        }

        for (int step = dropped.Count; step < count; step++)
        {
            int[] candidates = Enumerable.Range(0, layers).Except(dropped).ToArray();
            var masks = candidates.Select(c => LayerMask.Dropping(layers, dropped.Append(c))).ToArray();
            var sums = new double[layers];
            for (int b = 0; b < data.Batches.Count; b++)
            {
                float[] teacher = CalibrationPass.Logits(model, data, b, full);
                progress?.Report(new BaselineProgress($"drop-one-kl step {step + 1}/{count}", ++done, total));
                for (int i = 0; i < candidates.Length; i++)
                {
                    sums[candidates[i]] += LogitKl.SumOverRows(teacher, CalibrationPass.Logits(model, data, b, masks[i]), vocab);
                    progress?.Report(new BaselineProgress($"drop-one-kl step {step + 1}/{count}", ++done, total));
                }
            }
            double[] mean = sums.Select(x => x / data.Tokens).ToArray();
            dropOne ??= mean;
            int best = candidates[0];
            foreach (int c in candidates)
                if (mean[c] <= mean[best]) best = c;
            dropped.Add(best);
            klAfter.Add(mean[best]);
            stepFinished?.Invoke(new GreedyKlResult(dropped.ToArray(), klAfter.ToArray(), dropOne!));
        }
        return new GreedyKlResult(dropped, klAfter, dropOne!);
    }
}
