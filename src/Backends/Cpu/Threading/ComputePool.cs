using System.Runtime.ExceptionServices;

namespace E3.Backends.Cpu.Threading;

/// <summary>
/// Fork-join for the CPU kernels: one thread per extra core, which after a parallel region spins for a short while
/// (<see cref="SpinTicks"/>) before it sleeps. A training step issues a few hundred regions of 0.1–2 ms each with
/// microseconds of serial work between them; the .NET thread pool parks its workers in that gap and the next region pays
/// a wake-up (tens of microseconds and a context switch) per thread, which a spinning worker does not. Items are claimed
/// with one atomic increment each; which thread runs an item never affects its result, because every caller already
/// gives each output element exactly one owner.
/// The pool runs one region at a time: a region started while another is running (another thread's call, or a call
/// from inside an item) runs on its caller alone. The pool, its background threads and its wake-up event live as long as
/// the process, so there is nothing for a caller to dispose.
/// </summary>
internal sealed class ComputePool
{
    /// <summary>The pool the CPU backend uses: one worker per processor beyond the caller's.</summary>
    public static ComputePool Shared { get; } = new(Environment.ProcessorCount - 1);

    /// <summary>How long an idle worker keeps polling for the next region before it blocks (about 200 µs).</summary>
    static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 5000;

    [ThreadStatic] static bool t_inRegion;

    readonly object _gate = new();
    readonly ManualResetEventSlim _wake = new(false, spinCount: 0);
    readonly int _workers;
    Region? _region;
    int _generation;

    ComputePool(int workers)
    {
        _workers = Math.Max(workers, 0);
        for (int i = 0; i < _workers; i++)
            new Thread(Work) { IsBackground = true, Name = $"e3 compute {i + 1}" }.Start();
    }

    /// <summary>Runs body(0) … body(count − 1) on the caller and at most <paramref name="maxThreads"/> − 1 workers; returns when all are done.</summary>
    public void For(int count, int maxThreads, Action<int> body)
    {
        if (count <= 0) return;
        if (count == 1 || maxThreads <= 1 || _workers == 0 || t_inRegion || !Monitor.TryEnter(_gate))
        {
            for (int i = 0; i < count; i++) body(i);
            return;
        }
        try
        {
            var region = new Region(count, Math.Min(maxThreads - 1, _workers), body);
            Volatile.Write(ref _region, region);
            Interlocked.Increment(ref _generation);
            _wake.Set();
            t_inRegion = true;
            try { region.Run(); }
            finally { t_inRegion = false; }
            region.AwaitCompletion();
            Volatile.Write(ref _region, null);
            _wake.Reset();
            region.Rethrow();
        }
        finally { Monitor.Exit(_gate); }
    }

    /// <summary>
    /// Runs body(start, end) over contiguous ranges that cover 0..count, a few per thread: for items of equal cost, where
    /// one claim per item would cost more than the item, and a late or preempted thread still finds a range to take.
    /// </summary>
    public void ForRanges(long count, int maxThreads, Action<long, long> body)
    {
        if (count <= 0) return;
        int ranges = (int)Math.Min(count, 4L * Math.Max(maxThreads, 1));
        For(ranges, maxThreads, r => body(count * r / ranges, count * (r + 1) / ranges));
    }

    void Work()
    {
        t_inRegion = true;
        int seen = Volatile.Read(ref _generation);
        while (true)
        {
            long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
            var spinner = new SpinWait();
            while (Volatile.Read(ref _generation) == seen)
            {
                if (System.Diagnostics.Stopwatch.GetTimestamp() > deadline)
                {
                    _wake.Wait();
                    deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
                }
                else spinner.SpinOnce(sleep1Threshold: -1);
            }
            seen = Volatile.Read(ref _generation);
            if (Volatile.Read(ref _region) is { } region && region.TryJoin()) region.Run();
        }
    }

    /// <summary>One parallel region: the items, a claim counter, the count still running and the first exception.</summary>
    sealed class Region
    {
        readonly int _count;
        readonly Action<int> _body;
        int _next, _pending, _helperSlots;
        ExceptionDispatchInfo? _error;

        public Region(int count, int helpers, Action<int> body)
        {
            (_count, _pending, _helperSlots, _body) = (count, count, helpers, body);
        }

        public bool TryJoin() => Interlocked.Decrement(ref _helperSlots) >= 0;

        public void Run()
        {
            int i;
            while ((i = Interlocked.Increment(ref _next) - 1) < _count)
            {
                // After a failure the remaining items are still claimed, so that the count reaches zero, but not run.
                try { if (Volatile.Read(ref _error) == null) _body(i); }
                catch (Exception e) { Interlocked.CompareExchange(ref _error, ExceptionDispatchInfo.Capture(e), null); }
                finally { Interlocked.Decrement(ref _pending); }
            }
        }

        public void AwaitCompletion()
        {
            var spinner = new SpinWait();
            while (Volatile.Read(ref _pending) > 0) spinner.SpinOnce(sleep1Threshold: -1);
        }

        public void Rethrow() => _error?.Throw();
    }
}
