using E3.Model;
using E3.Model.Decoder;

namespace E3.Pruning.Baselines;

/// <summary>Progress of a baseline: <paramref name="Done"/> of <paramref name="Total"/> forward passes of a stage.</summary>
public readonly record struct BaselineProgress(string Stage, long Done, long Total);

/// <summary>Runs a model over a calibration set, with every layer or under a mask.</summary>
internal static class CalibrationPass
{
    /// <summary>The full model over every batch, feeding <paramref name="observer"/>; no logits are computed.</summary>
    public static void Observe(DecoderModel model, CalibrationSet data, IHiddenStateObserver observer, string stage, IProgress<BaselineProgress>? progress)
    {
        using var session = model.StartSession(LayerMask.All(model.Config.NumLayers), data.Batch, data.SequenceLength);
        for (int i = 0; i < data.Batches.Count; i++)
        {
            session.Reset();
            session.Forward(data.Batches[i], LogitsMode.None, observer);
            progress?.Report(new BaselineProgress(stage, i + 1, data.Batches.Count));
        }
    }

    /// <summary>Logits [B·T, V] of one batch under <paramref name="mask"/>.</summary>
    public static float[] Logits(DecoderModel model, CalibrationSet data, int batch, LayerMask mask)
    {
        using var session = model.StartSession(mask, data.Batch, data.SequenceLength);
        return session.Forward(data.Batches[batch], LogitsMode.All);
    }
}
