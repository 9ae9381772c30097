using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using E3.Backends.Cpu;
using BFloat16 = E3.Backends.Numerics.BFloat16;
using TorchSharp;

namespace E3.Bench;

/// <summary>A y[m,n] = x[m,k]·w[n,k]ᵀ problem size of the decoder layer.</summary>
public sealed record GemmShape(string Name, int M, int K, int N)
{
    public double Flops => 2.0 * M * K * N;
    public override string ToString() => $"{Name} {M}x{K}x{N}";
}

/// <summary>
/// Our nn.Linear GEMM (fp32 and bf16 weights) against libtorch's <c>nn.functional.linear</c> on the same data
/// and thread count. Run: <c>dotnet run -c Release --project bench/E3.Bench -- --filter '*GemmBenchmarks*'</c>.
/// </summary>
[Config(typeof(Config))]
public unsafe class GemmBenchmarks
{
    public static IEnumerable<GemmShape> Shapes =>
    [
        new("prefill-o", 512, 1024, 1024),
        new("prefill-qkv", 512, 1024, 3072),
        new("prefill-mlp", 512, 1024, 4096),
        new("decode-mlp", 1, 1024, 4096),
        new("lm-head", 512, 1024, 8192),
    ];

    [ParamsSource(nameof(Shapes))]
    public GemmShape Shape { get; set; } = Shapes.First();

    private float* _x, _w, _y;
    private ushort* _wBf16;
    private torch.Tensor? _xTorch, _wTorch;

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(Environment.ProcessorCount);
        var (m, k, n) = (Shape.M, Shape.K, Shape.N);
        _x = Allocate<float>((long)m * k);
        _w = Allocate<float>((long)n * k);
        _y = Allocate<float>((long)m * n);
        _wBf16 = Allocate<ushort>((long)n * k);
        var rng = new Random(1);
        for (long i = 0; i < (long)m * k; i++) _x[i] = (float)(rng.NextDouble() * 2 - 1);
        for (long i = 0; i < (long)n * k; i++)
        {
            // Both weight formats hold the same bf16-representable values, so every contender sees one matrix.
            _wBf16[i] = BFloat16.FromSingle((float)(rng.NextDouble() * 2 - 1));
            _w[i] = BFloat16.ToSingle(_wBf16[i]);
        }
        _xTorch = torch.tensor(new ReadOnlySpan<float>(_x, m * k).ToArray(), [m, k]);
        _wTorch = torch.tensor(new ReadOnlySpan<float>(_w, n * k).ToArray(), [n, k]);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _xTorch?.Dispose();
        _wTorch?.Dispose();
        NativeMemory.AlignedFree(_x);
        NativeMemory.AlignedFree(_w);
        NativeMemory.AlignedFree(_y);
        NativeMemory.AlignedFree(_wBf16);
    }

    [Benchmark(Baseline = true)]
    public void TorchLinearF32()
    {
        using var y = torch.nn.functional.linear(_xTorch!, _wTorch!);
    }

    [Benchmark]
    public void OursF32() => CpuGemm.MatMulTransB(_x, Shape.M, Shape.K, _w, Shape.N, _y, null, false);

    [Benchmark]
    public void OursBf16() => CpuGemm.MatMulTransB(_x, Shape.M, Shape.K, _wBf16, Shape.N, _y, null, false);

    private static T* Allocate<T>(long count) where T : unmanaged =>
        (T*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(T)), 64);

    /// <summary>A short in-process job (no per-benchmark project build) and a GFLOP/s column.</summary>
    private sealed class Config : ManualConfig
    {
        public Config()
        {
            AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance)
                .WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(7));
            AddColumn(StatisticColumn.Median, new GflopsColumn());
            AddDiagnoser(BenchmarkDotNet.Diagnosers.MemoryDiagnoser.Default);
            WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(32));
        }
    }

    /// <summary>2·m·k·n divided by the median time.</summary>
    private sealed class GflopsColumn : IColumn
    {
        public string Id => nameof(GflopsColumn);
        public string ColumnName => "GFLOP/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "2*m*k*n / median time";
        public bool IsAvailable(Summary summary) => true;
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
            GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var statistics = summary[benchmarkCase]?.ResultStatistics;
            if (statistics is null || benchmarkCase.Parameters["Shape"] is not GemmShape shape) return "NA";
            return (shape.Flops / statistics.Median).ToString("F1"); // flops per ns = GFLOP/s
        }
    }
}
