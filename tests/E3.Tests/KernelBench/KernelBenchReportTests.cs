using E3.Interop.Kernels.Bench;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>The report's bound for each kernel, from its analytic work against the roofs measured in the same run.</summary>
public sealed class KernelBenchReportTests
{
    static KernelMeasurement Measured(string name, long bytes, long flops, double ms) =>
        new(name, "bf16", new Dictionary<string, long>(), new KernelWork(bytes, flops), ms);

    [Fact]
    public void EachKernelIsJudgedByTheRoofItsWorkReachesFirst()
    {
        // Roofs: 2e9 bytes in 1 ms is 2,000 GB/s; 1e12 FLOPs in 1 ms is 1,000 TFLOP/s.
        var report = new KernelBenchReport("cuda", "test", "qwen3-8b", 5, "cuda-events", 100, 0,
            Measured("copy", 2_000_000_000, 0, 1), Measured("gemm", 1_000_000_000, 1_000_000_000_000, 1),
            [
                Measured("streaming", 1_000_000_000, 1_000_000_000, 0.6),   // 0.5 ms of bytes, 0.001 ms of FLOPs
                Measured("products", 1_000_000, 100_000_000_000, 0.12),     // 0.0005 ms of bytes, 0.1 ms of FLOPs
                Measured("tiny", 10_000_000, 1_000_000, 0.004),             // 0.005 ms of bytes: under the 0.01 ms floor
            ]);
        Assert.Equal(["memory", "compute", "latency"], report.Kernels.Select(report.Bound));
        var json = report.ToJson();
        Assert.Equal("memory", json["kernels"]![0]!["bound"]!.GetValue<string>());
        Assert.Contains("latency", report.ToTable());
        Assert.Equal(100.0, json["warmup_ms"]!.GetValue<double>());
        Assert.Contains("median of 5 after 100 ms of warm-up", report.ToTable());
    }

    [Fact]
    public void WarmupRunsAtLeastTheCountAndAtLeastTheTime()
    {
        var events = new List<string>();
        // A count with no least time: exactly the count, each run followed by the synchronisation.
        Assert.Equal(2, BenchWarmup.Run(() => events.Add("run"), 2, 0, () => events.Add("sync")));
        Assert.Equal(["run", "sync", "run", "sync"], events);
        // A least time: runs go on past the count until it has passed.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        int calls = BenchWarmup.Run(() => Thread.Sleep(1), 2, 40, null);
        Assert.True(clock.Elapsed.TotalMilliseconds >= 40, $"warm-up ended after {clock.Elapsed.TotalMilliseconds} ms");
        Assert.True(calls > 2, $"{calls} calls");
        // A slow run: the count still holds after the time has passed.
        Assert.Equal(3, BenchWarmup.Run(() => Thread.Sleep(30), 3, 10, null));
    }
}
