using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Tests.Reference;
using TorchSharp;

namespace E3.Bench;

/// <summary>
/// CPU forward+backward of the gated decoder against TorchSharp autograd through the reference forward, on the same
/// weights, the same loss (Σ c ⊙ logits) and the same thread count, in both modes: frozen (gate and input-embedding
/// gradients) and train (all weight gradients too). Tokens/s = Tokens / mean time.
/// Run: <c>dotnet run -c Release --project bench/E3.Bench -- --filter '*TrainingBenchmarks*'</c>.
/// </summary>
[Config(typeof(Config))]
public class TrainingBenchmarks
{
    [Params(128, 512)]
    public int Tokens { get; set; }

    const int Layers = 2;
    string _dir = "";
    CpuBackend _cpu = null!;
    DecoderModel _model = null!;
    GatedDecoderTrainer _frozen = null!, _train = null!;
    ReferenceCheckpoint _torchFrozen = null!, _torchTrain = null!;
    int[] _ids = [];
    float[] _dLogits = [];
    readonly float[] _gates = [1f, 0.5f];

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"e3-bench-train-{Guid.NewGuid():N}");
        RandomModel.Write(new RandomModelSpec
        {
            Architecture = Architecture.Qwen3, Layers = Layers, Hidden = 512, Heads = 8, KvHeads = 2, HeadDim = 64,
            Intermediate = 1536, Vocab = 2048, Seed = 3,
        }, _dir);
        _cpu = new CpuBackend();
        _model = DecoderModel.Load(_dir, _cpu);
        _frozen = new GatedDecoderTrainer(_model, new TrainingOptions { Mode = TrainingMode.Frozen, ComputeDroppedLayers = true });
        _train = new GatedDecoderTrainer(_model, new TrainingOptions { Mode = TrainingMode.Train, ComputeDroppedLayers = true });
        torch.set_num_threads(Environment.ProcessorCount);
        _torchFrozen = ReferenceCheckpoint.Load(_dir);
        _torchTrain = ReferenceCheckpoint.Load(_dir);
        foreach (var name in _torchTrain.TensorNames) _torchTrain.Weight(name).requires_grad_(true);
        var r = new Random(1);
        _ids = Enumerable.Range(0, Tokens).Select(_ => r.Next(2048)).ToArray();
        _dLogits = Enumerable.Range(0, Tokens * 2048).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    void TorchStep(ReferenceCheckpoint checkpoint)
    {
        using var scope = torch.NewDisposeScope();
        var ids = torch.tensor(_ids.Select(i => (long)i).ToArray(), dtype: torch.ScalarType.Int64);
        var embedded = checkpoint.Weight("model.embed_tokens.weight").index_select(0, ids).reshape(1, Tokens, -1).detach().requires_grad_(true);
        var gates = torch.tensor(_gates).requires_grad_(true);
        var logits = TorchReferenceDecoder.ForwardFromEmbeddings(checkpoint, embedded, gates).reshape(Tokens, -1);
        var c = torch.tensor(_dLogits).reshape(Tokens, -1);
        (logits * c).sum().backward();
    }

    [Benchmark(Baseline = true, Description = "TorchSharp autograd frozen")]
    public void TorchFrozen() => TorchStep(_torchFrozen);

    [Benchmark(Description = "E3 cpu frozen")]
    public object E3Frozen() // object: the gradients type is internal to the engine
    {
        _frozen.Forward(_ids, 1, _gates);
        return _frozen.Backward(_dLogits);
    }

    [Benchmark(Description = "TorchSharp autograd train")]
    public void TorchTrain() => TorchStep(_torchTrain);

    [Benchmark(Description = "E3 cpu train")]
    public object E3Train()
    {
        _train.Forward(_ids, 1, _gates);
        return _train.Backward(_dLogits);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _frozen.Dispose();
        _train.Dispose();
        _torchFrozen.Dispose();
        _torchTrain.Dispose();
        _model.Dispose();
        _cpu.Dispose();
        Directory.Delete(_dir, true);
    }

    sealed class Config : ManualConfig
    {
        public Config()
        {
            AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithLaunchCount(1).WithWarmupCount(6).WithIterationCount(15));
            AddColumn(StatisticColumn.Median);
        }
    }
}
