using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace E3.Tests.Reference;

/// <summary>Timings of the reference forward: every repeat's wall time and the derived throughput.</summary>
/// <param name="Threads">torch.set_num_threads value used.</param>
/// <param name="Batch">Sequences per forward.</param>
/// <param name="Tokens">Tokens per sequence.</param>
/// <param name="Seconds">Wall time of each timed repeat, in run order.</param>
public sealed record ReferenceTiming(int Threads, int Batch, int Tokens, IReadOnlyList<double> Seconds)
{
    /// <summary>Median wall time of one forward (mean of the middle two for an even count).</summary>
    public double MedianSeconds
    {
        get
        {
            var sorted = Seconds.Order().ToArray();
            int middle = sorted.Length / 2;
            return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
        }
    }

    /// <summary>Batch·tokens processed per second at the median time (prefill throughput).</summary>
    public double TokensPerSecond => Batch * (double)Tokens / MedianSeconds;
}

/// <summary>
/// Times the libtorch side of E3's CPU speed comparison: the float32 reference forward inside torch.no_grad(), with a
/// fixed intra-op thread count, after warm-up, reporting the median of repeats. Usable from bench/E3.Bench.
/// </summary>
public static class TorchReferenceTimer
{
    /// <summary>
    /// Runs <paramref name="warmup"/> untimed and <paramref name="repeats"/> timed forwards of a [batch, tokens] block of
    /// seeded random ids with all gates one. The previous torch thread count is restored afterwards.
    /// </summary>
    public static ReferenceTiming Measure(ReferenceCheckpoint checkpoint, int tokens, int batch, int threads, int warmup = 2, int repeats = 7, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(warmup);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        if (checkpoint.DType != ScalarType.Float32)
        {
            // A float64 checkpoint would be converted on every call and the timing would include that copy.
            throw new ArgumentException($"Time a Float32 checkpoint; this one was loaded as {checkpoint.DType}.", nameof(checkpoint));
        }

        var random = new Random(seed);
        var ids = new long[batch, tokens];
        for (int b = 0; b < batch; b++)
        {
            for (int t = 0; t < tokens; t++)
            {
                ids[b, t] = random.Next(checkpoint.Config.VocabSize);
            }
        }

        int previousThreads = torch.get_num_threads();
        torch.set_num_threads(threads);
        try
        {
            using var noGrad = torch.no_grad();
            for (int i = 0; i < warmup; i++)
            {
                TorchReferenceDecoder.Forward(checkpoint, ids).Dispose();
            }

            var seconds = new double[repeats];
            for (int i = 0; i < repeats; i++)
            {
                long start = Stopwatch.GetTimestamp();
                TorchReferenceDecoder.Forward(checkpoint, ids).Dispose();
                seconds[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
            }

            return new ReferenceTiming(threads, batch, tokens, seconds);
        }
        finally
        {
            torch.set_num_threads(previousThreads);
        }
    }
}
