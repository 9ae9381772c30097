using System.Diagnostics;
using E3.Interop.Gpu;

namespace E3.Interop.Kernels.Bench;

/// <summary>Times one operation: warm-up runs first, then the median of the timed repeats.</summary>
public interface IBenchTimer
{
    /// <summary>How the time is taken, as the report names it.</summary>
    string Kind { get; }

    /// <summary>Runs <paramref name="run"/> <paramref name="warmup"/> times untimed, then <paramref name="repeats"/> times timed; the median in ms.</summary>
    double MedianMilliseconds(Action run, int warmup, int repeats);
}

/// <summary>
/// Wall time from <see cref="Stopwatch"/> (a monotonic clock) around each run and the optional
/// <paramref name="synchronize"/> that waits for it to finish (the emulator's stream; nothing on the CPU).
/// </summary>
public sealed class MonotonicBenchTimer(Action? synchronize = null) : IBenchTimer
{
    /// <inheritdoc/>
    public string Kind => "monotonic-clock";

    /// <inheritdoc/>
    public double MedianMilliseconds(Action run, int warmup, int repeats)
    {
        for (int i = 0; i < warmup; i++) run();
        synchronize?.Invoke();
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
public sealed class EventBenchTimer : IBenchTimer, IDisposable
{
    private readonly IGpuDevice device;
    private readonly GpuStream stream;
    private readonly Action? coldStart;
    private readonly OwnedEvent start, end;

    /// <summary>Creates the two timing events on <paramref name="device"/>.</summary>
    /// <param name="device">Where the runs execute.</param>
    /// <param name="stream">The stream the runs are enqueued on.</param>
    /// <param name="coldStart">Enqueued on <paramref name="stream"/> before each timed run, outside the events; may be null.</param>
    public EventBenchTimer(IGpuDevice device, GpuStream stream, Action? coldStart = null)
    {
        this.device = device;
        this.stream = stream;
        this.coldStart = coldStart;
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
    public double MedianMilliseconds(Action run, int warmup, int repeats)
    {
        for (int i = 0; i < warmup; i++) run();
        device.Synchronize(stream);
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
public static class BenchStatistics
{
    /// <summary>The median (the mean of the middle two for an even count); sorts <paramref name="values"/> in place.</summary>
    public static double Median(Span<double> values)
    {
        if (values.IsEmpty) throw new ArgumentException("no timings to take the median of", nameof(values));
        values.Sort();
        int mid = values.Length / 2;
        return values.Length % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
    }
}
