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
        var report = new KernelBenchReport("cuda", "test", "qwen3-8b", 5, "cuda-events", 0,
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
    }
}
