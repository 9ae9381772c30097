using E3.Pruning.Baselines;
using E3.Tests.Reference;
using E3.Tests.Support;

namespace E3.Tests.Baselines;

/// <summary>A random Qwen3 checkpoint written by the independent reference writer, and calibration batches for it.</summary>
internal static class BaselineFixture
{
    public const int Vocab = 101;

    // Std 0.15 on hidden 64 makes every layer turn the residual stream visibly (cosines well below 1) and gives
    // logits of order 1, the regime ForwardParityTests bounds at 1e-4.
    public static string WriteModel(TempDir dir, int layers, int seed)
    {
        string folder = dir[$"qwen3-{layers}-{seed}"];
        var config = new ReferenceConfig("qwen3", VocabSize: Vocab, HiddenSize: 64, IntermediateSize: 96, NumHiddenLayers: layers,
            NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, RmsNormEps: 1e-6, RopeTheta: 1_000_000, TieWordEmbeddings: false, AttentionBias: false);
        ReferenceCheckpointWriter.WriteRandom(folder, config, seed, ReferenceStorage.F32, 1, 0.15);
        return folder;
    }

    public static CalibrationSet Data(int sequenceLength, int batch, int batches, int seed)
    {
        var random = new Random(seed);
        var list = Enumerable.Range(0, batches).Select(_ => Enumerable.Range(0, sequenceLength * batch).Select(_ => random.Next(Vocab)).ToArray()).ToArray();
        return new CalibrationSet(sequenceLength, batch, list);
    }

    /// <summary>One calibration batch as the reference's [B, T] token array.</summary>
    public static long[,] AsReferenceBatch(CalibrationSet data, int index)
    {
        var tokens = new long[data.Batch, data.SequenceLength];
        for (int b = 0; b < data.Batch; b++)
            for (int t = 0; t < data.SequenceLength; t++)
                tokens[b, t] = data.Batches[index][b * data.SequenceLength + t];
        return tokens;
    }
}
