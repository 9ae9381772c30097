using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using E3.Backends;
using E3.Backends.Gpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Support;

namespace E3.Bench;

/// <summary>
/// What e3's own host code costs to enqueue one step of the GPU backend, on Qwen3-8B layer shapes (hidden 4096, 32 x 128
/// heads, 8 kv heads, MLP 12288; 4 layers and a small vocabulary, since the host cost does not depend on either). The
/// backend runs on <see cref="HostOnlyGpuDevice"/>, which does no work, so the time is argument blocks, launch shapes
/// and GEMM descriptors alone: the driver's launch call and cuBLAS's dispatch come on top of it on a real GPU. A decode
/// step is host-bound when this plus those exceeds the GPU's time for the step (about 100 µs a layer on an H200, where
/// a layer's 386 MB of bf16 weights stream at ~4 TB/s). The pruned model drops one layer of the four, so full minus
/// pruned is one layer's cost; the setup prints the launches and GEMMs per step.
/// Run: <c>dotnet run -c Release --project bench/E3.Bench -- --filter '*DecodeHostOverheadBenchmarks*'</c>.
/// </summary>
[Config(typeof(Config))]
public class DecodeHostOverheadBenchmarks
{
    const int Layers = 4, Capacity = 1 << 20, Prompt = 512;

    string _dir = "";
    HostOnlyGpuDevice _device = null!;
    GpuBackend _backend = null!;
    DecoderModel _model = null!;
    InferenceSession _full = null!, _pruned = null!;
    int[] _step = [], _prompt = [];

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"e3-bench-host-{Guid.NewGuid():N}");
        RandomModel.Write(new RandomModelSpec
        {
            Architecture = Architecture.Qwen3, Layers = Layers, Hidden = 4096, Heads = 32, KvHeads = 8, HeadDim = 128,
            Intermediate = 12288, Vocab = 1024, Seed = 9, Dtype = "bfloat16",
        }, _dir);
        _device = HostOnlyGpuDevice.H100();
        _backend = new GpuBackend(_device, DType.BF16, ownsDevice: false);
        _model = DecoderModel.Load(_dir, _backend);
        _step = [7];
        _prompt = Enumerable.Range(0, Prompt).Select(i => i % 1024).ToArray();
        _full = Start(LayerMask.All(Layers));
        _pruned = Start(LayerMask.Dropping(Layers, [Layers - 1]));
        foreach (var (name, session) in new[] { ("full", _full), ("pruned", _pruned) })
        {
            // The first step also converts each norm weight once to the activation dtype: count the second.
            session.ForwardArgMax(_step);
            _device.ResetCounts();
            session.ForwardArgMax(_step);
            Console.WriteLine($"// decode step, {name} ({session.Mask.KeptCount} of {Layers} layers): {_device.Launches} launches, {_device.Gemms} GEMMs");
        }
    }

    InferenceSession Start(LayerMask mask)
    {
        var session = _model.StartSession(mask, 1, Capacity);
        session.Prepare(Prompt, LogitsMode.Last);
        session.Prepare(1, LogitsMode.Last);
        return session;
    }

    static int[] Step(InferenceSession session, int[] tokens)
    {
        // The fake cache never fills: start over before the position passes its capacity.
        if (session.Position + tokens.Length > session.Capacity) session.Reset();
        return session.ForwardArgMax(tokens);
    }

    [Benchmark(Baseline = true, Description = "decode step, 4 layers")]
    public int[] DecodeFull() => Step(_full, _step);

    [Benchmark(Description = "decode step, 3 layers")]
    public int[] DecodePruned() => Step(_pruned, _step);

    [Benchmark(Description = "prefill 512 tokens, 4 layers")]
    public int[] PrefillFull()
    {
        _full.Reset();
        return Step(_full, _prompt);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _full.Dispose();
        _pruned.Dispose();
        _model.Dispose();
        _backend.Dispose();
        Directory.Delete(_dir, true);
    }

    sealed class Config : ManualConfig
    {
        public Config()
        {
            AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance).WithLaunchCount(1));
            AddColumn(StatisticColumn.Median);
            AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);
        }
    }
}
