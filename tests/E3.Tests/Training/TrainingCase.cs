using E3.Tests.Reference;
using E3.Tests.Support;

namespace E3.Tests.Training;

/// <summary>
/// A tiny random model on disk plus fixed inputs for the gradient tests: [B, T] tokens, gates with some at 0, some at
/// 1 and some fractional, and the loss L = Σ c ⊙ logits + mean cross-entropy(logits, labels) with fixed random c and labels.
/// </summary>
internal sealed class TrainingCase : IDisposable
{
    readonly TempDir _dir = new("e3-train");

    // std 0.15 projections keep every term (attention, MLP, norms, biases) large enough to show in the gradients.
    const double ProjectionStd = 0.15;

    public TrainingCase(string modelType, bool tied, bool attentionBias, float[] gates, int batch = 2, int positions = 7, int seed = 3,
        ReferenceStorage storage = ReferenceStorage.F32)
    {
        Config = new ReferenceConfig(modelType, VocabSize: 37, HiddenSize: modelType == "qwen3" ? 24 : 32, IntermediateSize: 40,
            NumHiddenLayers: gates.Length, NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 8, RmsNormEps: 1e-6,
            RopeTheta: modelType == "llama" ? 10_000 : 1_000_000, TieWordEmbeddings: tied, AttentionBias: attentionBias);
        Folder = _dir["model"];
        ReferenceCheckpointWriter.WriteRandom(Folder, Config, seed, storage, 1, ProjectionStd);
        Gates = gates;
        Batch = batch;
        Positions = positions;
        var random = new Random(seed + 100);
        Tokens = Enumerable.Range(0, batch * positions).Select(_ => random.Next(Config.VocabSize)).ToArray();
        Labels = Enumerable.Range(0, batch * positions).Select(_ => random.Next(Config.VocabSize)).ToArray();
        Weights = Enumerable.Range(0, batch * positions * Config.VocabSize).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    public ReferenceConfig Config { get; }
    public string Folder { get; }
    public float[] Gates { get; }
    public int Batch { get; }
    public int Positions { get; }
    public int[] Tokens { get; }
    /// <summary>Cross-entropy targets, one per token row.</summary>
    public int[] Labels { get; }
    /// <summary>c in Σ c ⊙ logits, [B·T, V].</summary>
    public float[] Weights { get; }

    /// <summary>The loss in double from logits [B·T, V].</summary>
    public double Loss(ReadOnlySpan<double> logits)
    {
        int v = Config.VocabSize, rows = Tokens.Length;
        double linear = 0, ce = 0;
        for (int r = 0; r < rows; r++)
        {
            var row = logits.Slice(r * v, v);
            double max = double.NegativeInfinity;
            for (int j = 0; j < v; j++) max = Math.Max(max, row[j]);
            double sum = 0;
            for (int j = 0; j < v; j++) { sum += Math.Exp(row[j] - max); linear += (double)Weights[r * v + j] * row[j]; }
            ce += max + Math.Log(sum) - row[Labels[r]];
        }
        return linear + ce / rows;
    }

    /// <summary>dL/dlogits in double, rounded to fp32: c + (softmax − onehot)/rows.</summary>
    public float[] LossGradient(ReadOnlySpan<float> logits)
    {
        int v = Config.VocabSize, rows = Tokens.Length;
        var grad = new float[logits.Length];
        for (int r = 0; r < rows; r++)
        {
            var row = logits.Slice(r * v, v);
            double max = double.NegativeInfinity;
            for (int j = 0; j < v; j++) max = Math.Max(max, row[j]);
            double sum = 0;
            for (int j = 0; j < v; j++) sum += Math.Exp(row[j] - max);
            for (int j = 0; j < v; j++)
            {
                double softmax = Math.Exp(row[j] - max) / sum;
                grad[r * v + j] = (float)(Weights[r * v + j] + (softmax - (j == Labels[r] ? 1 : 0)) / rows);
            }
        }
        return grad;
    }

    public void Dispose() => _dir.Dispose();
}
