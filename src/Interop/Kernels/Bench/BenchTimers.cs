using System.Diagnostics;
using E3.Interop.Gpu;

namespace E3.Interop.Kernels.Bench;

/// <summary>Times one operation: warm-up runs first, then the median of the timed repeats.</summary>
internal interface IBenchTimer
{
    /// <summary>How the time is taken, as the report names it.</summary>
    string Kind { get; }

    /// <summary>
    /// Runs <paramref name="run"/> untimed at least <paramref name="warmup"/> times and for at least
    /// <see cref="MinimumWarmupMilliseconds"/>, then <paramref name="repeats"/> times timed; the median in ms.
    /// </summary>
    double MedianMilliseconds(Action run, int warmup, int repeats);

    /// <summary>The least time each measurement's warm-up lasts (see <see cref="BenchWarmup"/>).</summary>
    double MinimumWarmupMilliseconds { get; }
}

/// <summary>
/// The untimed runs before a measurement. A count alone is not enough under tiered compilation: .NET runs a method's
/// unoptimised tier-0 code for its first 30 calls, and promotes it only once no new method has been compiled for 100 ms,
/// so the two warm-up calls of a few-microsecond CPU kernel left the timed repeats in tier-0 code, unvectorised. The CPU
/// bench's SwiGLU measured 1.86 ms that way and 0.03 ms with the JIT settled. Hence a least duration as well as a count
/// (e3 itself also turns tier-0 compilation off for non-precompiled code; framework code still tiers up).
/// </summary>
internal static class BenchWarmup
{
    /// <summary>
    /// Calls <paramref name="run"/> (and <paramref name="synchronize"/> after each, so that queued device work counts
    /// as time passed) until it has run <paramref name="calls"/> times and <paramref name="minimumMilliseconds"/> have
    /// passed; returns the number of calls.
    /// </summary>
    public static int Run(Action run, int calls, double minimumMilliseconds, Action? synchronize)
    {
        ArgumentNullException.ThrowIfNull(run);
        long start = Stopwatch.GetTimestamp();
        int done = 0;
        while (done < calls || Stopwatch.GetElapsedTime(start).TotalMilliseconds < minimumMilliseconds)
        {
            run();
            synchronize?.Invoke();
            done++;
        }
        return done;
    }
}

/// <summary>
/// Wall time from <see cref="Stopwatch"/> (a monotonic clock) around each run and the optional
/// <paramref name="synchronize"/> that waits for it to finish (the emulator's stream; nothing on the CPU).
/// </summary>
/// <param name="synchronize">Waits for a run to finish; null where runs are synchronous.</param>
/// <param name="minimumWarmupMilliseconds">The least warm-up per measurement (<see cref="BenchWarmup"/>).</param>
internal sealed class MonotonicBenchTimer(Action? synchronize = null, double minimumWarmupMilliseconds = 0) : IBenchTimer
{
    /// <inheritdoc/>
    public string Kind => "monotonic-clock";

    /// <inheritdoc/>
    public double MinimumWarmupMilliseconds => minimumWarmupMilliseconds;

    /// <inheritdoc/>
    public double MedianMilliseconds(Action run, int warmup, int repeats)
    {
        BenchWarmup.Run(run, warmup, minimumWarmupMilliseconds, synchronize);
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            long start = Stopwatch.GetTimestamp();
            run();
            synchronize?.Invoke();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return BenchStatistics.Median(times);
    }
}

/// <summary>
/// Device time between two events recorded around each run on the stream (cuEventRecord / cuEventElapsedTime).
/// <para>
/// With <c>coldStart</c> (the kernel bench passes a memset of several times the L2 cache), each timed run is preceded on
/// the stream by that work, outside the events. That does two things a bare pair of events does not. The run reads its
/// inputs from DRAM, as the copy that defines the bandwidth roof does, instead of from the L2 the previous repeat left
/// them in (a 32 MB row kernel fits a 50 MB L2). And the GPU is still busy with the memset while the host enqueues the
/// start event and the launches, so the events time the kernels rather than the host's launch latency, which for a
/// 10 µs kernel on an idle GPU is a sizeable part of the measured time.
/// </para>
/// </summary>
internal sealed class EventBenchTimer : IBenchTimer, IDisposable
{
    private readonly IGpuDevice device;
    private readonly GpuStream stream;
    private readonly Action? coldStart;
    private readonly double minimumWarmupMilliseconds;
    private readonly OwnedEvent start, end;

    /// <summary>Creates the two timing events on <paramref name="device"/>.</summary>
    /// <param name="device">Where the runs execute.</param>
    /// <param name="stream">The stream the runs are enqueued on.</param>
    /// <param name="coldStart">Enqueued on <paramref name="stream"/> before each timed run, outside the events; may be null.</param>
    /// <param name="minimumWarmupMilliseconds">The least warm-up per measurement (<see cref="BenchWarmup"/>): the host
    /// code that enqueues a run must be out of tier 0 too, or the GPU may wait for it inside the events.</param>
    public EventBenchTimer(IGpuDevice device, GpuStream stream, Action? coldStart = null, double minimumWarmupMilliseconds = 0)
    {
        this.device = device;
        this.stream = stream;
        this.coldStart = coldStart;
        this.minimumWarmupMilliseconds = minimumWarmupMilliseconds;
        start = device.CreateOwnedEvent();
        try
        {
            end = device.CreateOwnedEvent();
        }
        catch
        {
            start.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public string Kind => "cuda-events";

    /// <inheritdoc/>
    public double MinimumWarmupMilliseconds => minimumWarmupMilliseconds;

    /// <inheritdoc/>
    public double MedianMilliseconds(Action run, int warmup, int repeats)
    {
        BenchWarmup.Run(run, warmup, minimumWarmupMilliseconds, () => device.Synchronize(stream));
        var times = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            coldStart?.Invoke();
            start.Record(stream);
            run();
            end.Record(stream);
            end.Synchronize();
            times[i] = end.MillisecondsSince(start);
        }
        return BenchStatistics.Median(times);
    }

    /// <summary>Destroys the events.</summary>
    public void Dispose()
    {
        start.Dispose();
        end.Dispose();
    }
}

/// <summary>Order statistics of timings.</summary>
internal static class BenchStatistics
{
    /// <summary>The median (the mean of the middle two for an even count); sorts <paramref name="values"/> in place.</summary>
    public static double Median(Span<double> values)
    {
        if (values.IsEmpty) throw new ArgumentException("no timings to take the median of", nameof(values));
        values.Sort();
        int mid = values.Length / 2;
        return values.Length % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
    }

    /// <summary>
    /// A confidence interval for the median of whatever distribution <paramref name="values"/> were drawn from,
    /// assuming only that they are independent draws from one continuous distribution: the order statistics
    /// x₍ₖ₎ and x₍ₙ₊₁₋ₖ₎ with the largest k whose coverage, 1 − 2·P(B ≤ k − 1) for B ~ Binomial(n, ½), is at least
    /// <paramref name="level"/>. Null when even the full range covers less (at 95%, fewer than 6 values). Does not
    /// change <paramref name="values"/>.
    /// </summary>
    public static MedianInterval? MedianInterval(ReadOnlySpan<double> values, double level = 0.95)
    {
        if (!(level > 0 && level < 1)) throw new ArgumentOutOfRangeException(nameof(level), level, "must lie strictly between 0 and 1");
        int n = values.Length;
        int best = 0;
        double bestCoverage = 0;
        for (int k = 1; 2 * k <= n + 1; k++)
        {
            double coverage = 1 - 2 * BinomialHalfCdf(n, k - 1);
            if (coverage < level) break;
            best = k;
            bestCoverage = coverage;
        }
        if (best == 0) return null;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        return new MedianInterval(sorted[best - 1], sorted[n - best], bestCoverage);
    }

    /// <summary>P(B ≤ k) for B ~ Binomial(n, ½), summed in the log domain so that large n does not underflow 2⁻ⁿ.</summary>
    public static double BinomialHalfCdf(int n, int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (k < 0) return 0;
        if (k >= n) return 1;
        double logChoose = 0, sum = 0, logHalfN = n * Math.Log(0.5);
        for (int j = 0; j <= k; j++)
        {
            if (j > 0) logChoose += Math.Log((n - j + 1) / (double)j);
            sum += Math.Exp(logChoose + logHalfN);
        }
        return Math.Min(1, sum);
    }
}

/// <summary>A distribution-free confidence interval for a median (<see cref="BenchStatistics.MedianInterval"/>).</summary>
/// <param name="Low">Its lower end: an order statistic of the sample.</param>
/// <param name="High">Its upper end.</param>
/// <param name="Coverage">The probability that such an interval holds the true median (at least the level asked for).</param>
public readonly record struct MedianInterval(double Low, double High, double Coverage);
