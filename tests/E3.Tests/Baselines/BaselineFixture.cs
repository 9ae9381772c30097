using E3.Backends.Cpu;
using E3.Model.Decoder;
using E3.Pruning.Baselines;
using E3.Tests.Reference;
using E3.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace E3.Tests.Baselines;

/// <summary>
/// A random Qwen3 checkpoint written by the independent reference writer into a temp folder, random calibration
/// batches for it, and a one-thread CPU backend to load it on.
/// </summary>
internal sealed class BaselineFixture : IDisposable
{
    public const int Vocab = 101;
    readonly TempDir _dir = new("e3-baseline");
    readonly CpuBackend _cpu = new(1);

    // Std 0.15 on hidden 64 makes every layer turn the residual stream visibly (cosines well below 1) and gives
    // logits of order 1, the regime ForwardParityTests bounds at 1e-4.
    public BaselineFixture(int layers, int modelSeed, int sequenceLength, int batch, int batches, int dataSeed)
    {
        Layers = layers;
        Folder = _dir["model"];
        var config = new ReferenceConfig("qwen3", VocabSize: Vocab, HiddenSize: 64, IntermediateSize: 96, NumHiddenLayers: layers,
            NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, RmsNormEps: 1e-6, RopeTheta: 1_000_000, TieWordEmbeddings: false, AttentionBias: false);
        ReferenceCheckpointWriter.WriteRandom(Folder, config, modelSeed, ReferenceStorage.F32, 1, 0.15);
        var random = new Random(dataSeed);
        var list = Enumerable.Range(0, batches).Select(_ => Enumerable.Range(0, sequenceLength * batch).Select(_ => random.Next(Vocab)).ToArray()).ToArray();
        Data = new CalibrationSet(sequenceLength, batch, list);
    }

    public int Layers { get; }
    public string Folder { get; }
    public CalibrationSet Data { get; }

    /// <summary>E3's model on the CPU (the caller disposes it).</summary>
    public DecoderModel LoadModel() => DecoderModel.Load(Folder, _cpu);

    /// <summary>The reference's float64 copy of the weights (the caller disposes it).</summary>
    public ReferenceCheckpoint LoadReference() => ReferenceCheckpoint.Load(Folder, ScalarType.Float64);

    /// <summary>Calibration batch <paramref name="index"/> as the reference's [B, T] token array.</summary>
    public long[,] ReferenceBatch(int index)
    {
        var tokens = new long[Data.Batch, Data.SequenceLength];
        for (int b = 0; b < Data.Batch; b++)
            for (int t = 0; t < Data.SequenceLength; t++)
                tokens[b, t] = Data.Batches[index][b * Data.SequenceLength + t];
        return tokens;
    }

    /// <summary>
    /// Mean KL(full‖pruned) per token for each set of dropped layers, from the reference's float64 logits with torch's
    /// log_softmax, and the largest |log p − log q| over all of them (it sizes the test's tolerance).
    /// </summary>
    public (double[] Kl, double MaxLogRatio) ReferenceKl(IReadOnlyList<int[]> droppedSets) => OneTorchThread(() =>
    {
        using var reference = LoadReference();
        using var scope = torch.NewDisposeScope();
        var batches = Enumerable.Range(0, Data.Batches.Count).Select(ReferenceBatch).ToArray();
        var teacher = batches.Select(tokens => F.log_softmax(TorchReferenceDecoder.Forward(reference, tokens, null, ScalarType.Float64), -1)).ToArray();
        var kl = new double[droppedSets.Count];
        double maxRatio = 0;
        for (int m = 0; m < droppedSets.Count; m++)
        {
            var gates = Enumerable.Range(0, Layers).Select(l => droppedSets[m].Contains(l) ? 0f : 1f).ToArray();
            double sum = 0;
            for (int i = 0; i < batches.Length; i++)
            {
                using var inner = torch.NewDisposeScope();
                var logP = teacher[i];
                var logQ = F.log_softmax(TorchReferenceDecoder.Forward(reference, batches[i], gates, ScalarType.Float64), -1);
                sum += (logP.exp() * (logP - logQ)).sum().ToDouble();
                maxRatio = Math.Max(maxRatio, (logP - logQ).abs().max().ToDouble());
            }
            kl[m] = sum / Data.Tokens;
        }
        return (kl, maxRatio);
    });

    /// <summary>
    /// Runs reference code with torch on one thread. These tensors are tiny, and on a loaded two-core machine torch's
    /// spinning worker threads made the reference ten times slower than on one thread (45 s against 4 s measured).
    /// </summary>
    public static T OneTorchThread<T>(Func<T> body)
    {
        int threads = torch.get_num_threads();
        torch.set_num_threads(1);
        try
        {
            return body();
        }
        finally
        {
            torch.set_num_threads(threads);
        }
    }

    public void Dispose()
    {
        _cpu.Dispose();
        _dir.Dispose();
    }
}
