using System.Diagnostics;
using E3.Interop.Kernels;
using E3.Interop.Kernels.Bench;

namespace E3.Pruning.Masking;

/// <summary>Median wall time of one forward+backward of a shape, over timed repetitions after warm-up.</summary>
internal readonly record struct GumbelTopKTimingResult(int Samples, int Layers, int Keep, int Threads, double MedianMilliseconds, int Repetitions);

/// <summary>
/// The timing a <c>e3 bench kernels</c> command reports for the mask sampler: the fused CPU forward+backward
/// at the reference shape (S = 4096, L = 64, k = 48) or any other.
/// </summary>
internal static class GumbelTopKTiming
{
    /// <summary>Times <see cref="CpuGumbelTopK.ForwardBackward"/> (soft-top-k, tau = 1) on fixed inputs.</summary>
    public static GumbelTopKTimingResult MeasureCpu(int samples = 4096, int layers = 64, int keep = 48, int threads = 1, int repetitions = 15,
        GumbelRelaxation relaxation = GumbelRelaxation.SoftTopK)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        var spec = new GumbelTopKSpec(layers, keep, samples, 1f, 1, 0, relaxation);
        spec.Validate();
        var inputs = new GumbelTopKBenchInputs(spec);
        var sampler = new CpuGumbelTopK(threads);
        var hard = new float[spec.MaskElements];
        var soft = new float[spec.MaskElements];
        var grad = new float[layers];
        sampler.ForwardBackward(inputs.Logits, spec, inputs.GradMask, hard, soft, grad); // warm-up (JIT, pools)
        var times = new double[repetitions];
        for (var r = 0; r < repetitions; r++)
        {
            var start = Stopwatch.GetTimestamp();
            sampler.ForwardBackward(inputs.Logits, spec, inputs.GradMask, hard, soft, grad);
            times[r] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return new GumbelTopKTimingResult(samples, layers, keep, threads, BenchStatistics.Median(times), repetitions);
    }
}

/// <summary>Deterministic logits and dL/dm for benchmarks, so every contender sees the same inputs.</summary>
internal sealed class GumbelTopKBenchInputs
{
    /// <summary>Logits in [-1, 1) and dL/dm in [-1, 1) from a fixed seed.</summary>
    public GumbelTopKBenchInputs(in GumbelTopKSpec spec)
    {
        var random = new Random(20240611);
        Logits = Enumerable.Range(0, spec.Layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        GradMask = Enumerable.Range(0, (int)spec.MaskElements).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    /// <summary>One logit per layer.</summary>
    public float[] Logits { get; }

    /// <summary>dL/dm, [samples x layers].</summary>
    public float[] GradMask { get; }
}
