using BenchmarkDotNet.Attributes;
using E3.Pruning.Distillation;
using TorchSharp;
using static TorchSharp.torch;

namespace E3.Bench;

/// <summary>
/// CPU fused KD forward+backward against TorchSharp's composite (log_softmax, softmax, entropy, weighted sum,
/// autograd) at T = 512, V = 151,936, and the chunked LM head against one unchunked chunk. Peak extra memory is
/// the rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over the resident size
/// before the call, printed once per method; it includes native allocations that MemoryDiagnoser cannot see.
/// Run: dotnet run -c Release --project bench/E3.Bench -- --filter '*EntropyKd*'
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class EntropyKdBenchmarks
{
    private const int Rows = 512, Vocab = 151_936;
    private float[] student = [], teacher = [], work = [];
    private int[] labels = [];
    private readonly KdOptions options = new() { Temperature = 2.0, KdFraction = 1.0 };

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        student = new float[Rows * Vocab];
        teacher = new float[Rows * Vocab];
        for (int i = 0; i < student.Length; i++)
        {
            student[i] = (float)(random.NextDouble() * 12 - 6);
            teacher[i] = (float)(random.NextDouble() * 12 - 6);
        }
        work = new float[student.Length];
        student.CopyTo(work, 0); // touch every page now, so the peak-RSS figures below count only what the call adds
        labels = new int[Rows];
        FusedOnce();
        TorchComposite();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        FusedOnce();
        double fused = clock.Elapsed.TotalSeconds;
        clock.Restart();
        TorchComposite();
        double torch = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"// one warm call: fused {fused:F3} s, torch composite {torch:F3} s, ratio {torch / fused:F2}x");
        Console.WriteLine($"// peak extra RSS fused: {PeakRss.Measure(FusedOnce) / 1e6:F1} MB, torch composite: {PeakRss.Measure(() => TorchComposite()) / 1e6:F1} MB");
    }

    [Benchmark(Baseline = true)]
    public double TorchComposite()
    {
        using var scope = NewDisposeScope();
        var zs = from_array(student).reshape(Rows, Vocab).requires_grad_(true);
        var zt = from_array(teacher).reshape(Rows, Vocab);
        double tau = options.Temperature;
        var logp = nn.functional.log_softmax(zt / tau, 1);
        var logq = nn.functional.log_softmax(zs / tau, 1);
        var p = nn.functional.softmax(zt / tau, 1);
        var entropy = -(p * logp).sum(1);
        var weights = (entropy / entropy.mean()).detach();
        var loss = (weights * (p * (logp - logq)).sum(1)).sum() * (tau * tau / Rows);
        loss.backward();
        return loss.item<float>();
    }

    [Benchmark]
    public double Fused()
    {
        FusedOnce();
        return work[0];
    }

    private void FusedOnce()
    {
        student.CopyTo(work, 0);
        EntropyKdLoss.Compute(work, Vocab, new DenseTeacher(teacher, Rows, Vocab), [], options);
    }
}

/// <summary>Peak resident memory added by an action (Linux: VmHWM after resetting it).</summary>
internal static class PeakRss
{
    public static long Measure(Action action)
    {
        GC.Collect();
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
        long before = Read("VmRSS:");
        action();
        return Read("VmHWM:") - before;
    }

    private static long Read(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0]) * 1024;
        throw new InvalidOperationException($"/proc/self/status has no {field}");
    }
}
