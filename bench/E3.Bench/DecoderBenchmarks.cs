using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Reference;
using TorchSharp;

namespace E3.Bench;

/// <summary>
/// The CPU forward against the TorchSharp reference forward (libtorch ops, transformers' computation) on the same
/// weights and the same thread count, measured side by side in one run. The model is layer-dominated: a decoder
/// layer's projections are where the time goes, as in the speedup benchmark.
/// Run: <c>dotnet run -c Release --project bench/E3.Bench -- --filter '*ForwardBenchmarks*'</c>.
/// </summary>
[Config(typeof(Config))]
public class ForwardBenchmarks
{
    [Params(1, 128)]
    public int Tokens { get; set; }

    string _dir = "";
    CpuBackend _cpu = null!;
    DecoderModel _f32 = null!, _bf16 = null!;
    ReferenceCheckpoint _reference = null!;
    int[] _ids = [];
    long[] _longIds = [];

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"e3-bench-forward-{Guid.NewGuid():N}");
        RandomModel.Write(new RandomModelSpec
        {
            Architecture = Architecture.Qwen3, Layers = 4, Hidden = 1024, Heads = 16, KvHeads = 4, HeadDim = 64,
            Intermediate = 3072, Vocab = 8192, Seed = 3,
        }, _dir);
        _cpu = new CpuBackend();
        _f32 = DecoderModel.Load(_dir, _cpu);
        _bf16 = DecoderModel.Load(_dir, _cpu, WeightPrecision.BF16);
        torch.set_num_threads(Environment.ProcessorCount);
        _reference = ReferenceCheckpoint.Load(_dir);
        var r = new Random(1);
        _ids = Enumerable.Range(0, Tokens).Select(_ => r.Next(8192)).ToArray();
        _longIds = _ids.Select(i => (long)i).ToArray();
    }

    [Benchmark(Baseline = true, Description = "libtorch reference fp32")]
    public void Torch()
    {
        using var noGrad = torch.no_grad();
        TorchReferenceDecoder.Forward(_reference, _longIds).Dispose();
    }

    [Benchmark(Description = "E3 cpu fp32")]
    public float[] E3F32() => _f32.Forward(_ids);

    [Benchmark(Description = "E3 cpu bf16 weights")]
    public float[] E3Bf16() => _bf16.Forward(_ids);

    [GlobalCleanup]
    public void Cleanup()
    {
        _reference.Dispose();
        _f32.Dispose();
        _bf16.Dispose();
        _cpu.Dispose();
        Directory.Delete(_dir, true);
    }

    sealed class Config : ManualConfig
    {
        public Config()
        {
            AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(7));
            AddColumn(StatisticColumn.Median);
        }
    }
}

/// <summary>
/// One decoder layer (a one-layer model with a tiny vocabulary, so embedding and head are negligible) for prefill
/// and decode, with fp32 and bf16 weights. Run: <c>--filter '*DecoderLayerBenchmarks*'</c>.
/// </summary>
[Config(typeof(Config))]
public class DecoderLayerBenchmarks
{
    [Params(1024, 4096)]
    public int Hidden { get; set; }

    [Params("f32", "bf16")]
    public string Weights { get; set; } = "f32";

    string _dir = "";
    CpuBackend _cpu = null!;
    DecoderModel _model = null!;
    InferenceSession _decode = null!;
    int[] _prompt = [];

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"e3-bench-layer-{Guid.NewGuid():N}");
        RandomModel.Write(new RandomModelSpec
        {
            Architecture = Architecture.Qwen3, Layers = 1, Hidden = Hidden, Heads = Hidden / 128, KvHeads = Math.Max(1, Hidden / 1024),
            HeadDim = 128, Intermediate = Hidden * 3, Vocab = 64, Seed = 5,
        }, _dir);
        _cpu = new CpuBackend();
        _model = DecoderModel.Load(_dir, _cpu, Weights == "bf16" ? WeightPrecision.BF16 : WeightPrecision.F32);
        _prompt = Enumerable.Range(0, 128).Select(i => i % 64).ToArray();
        _decode = _model.StartSession(LayerMask.All(1), 1, 1 << 16);
        _decode.Forward(_prompt, LogitsMode.None);
    }

    [Benchmark(Description = "prefill 128 tokens")]
    public float[] Prefill()
    {
        using var s = _model.StartSession(LayerMask.All(1), 1, 128);
        return s.Forward(_prompt, LogitsMode.Last);
    }

    [Benchmark(Description = "decode 1 token")]
    public float[] Decode()
    {
        if (_decode.Position + 1 > _decode.Capacity) _decode.Reset();
        return _decode.Forward([7], LogitsMode.Last);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _decode.Dispose();
        _model.Dispose();
        _cpu.Dispose();
        Directory.Delete(_dir, true);
    }

    sealed class Config : ManualConfig
    {
        public Config()
        {
            AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(9));
            AddColumn(StatisticColumn.Median);
        }
    }
}
