namespace E3.Interop.Emulator;

/// <summary>
/// The emulator's stream queues in <see cref="EmuExecution.Deferred"/> mode. Work queued on a stream runs only when
/// the host has to wait for it (a stream or event synchronisation, a copy into pageable memory, a free that the
/// driver synchronises), in stream order. That is one of the schedules a GPU may choose, the one that delays work
/// the longest, so code that reads a result before waiting for it, or reads on one stream what another stream has
/// not yet been waited for, sees stale memory here as it eventually would on a GPU, and does so every run.
/// </summary>
internal sealed class DeferredStreams
{
    // Past this many bytes of pageable source snapshots held for queued copies, the stream is run: a GPU would have
    // consumed them long before, and the snapshots of a large upload must not double the host memory it takes.
    internal const long MaxPendingSnapshotBytes = 256L << 20;

    // A device is meant for one thread at a time; the lock keeps the queues whole if two ever share one.
    readonly Lock _gate = new();
    readonly Dictionary<nint, StreamQueue> _streams = new();
    readonly Dictionary<nint, (nint Stream, long Sequence)> _events = new();
    EmuException? _sticky;

    /// <summary>
    /// The failure of queued work, once there was one. On a GPU an error inside a kernel leaves the context unusable:
    /// every later call reports it. Here every later submission and wait throws it again, and nothing queued runs.
    /// </summary>
    public EmuException? StickyError
    {
        get
        {
            lock (_gate)
                return _sticky;
        }
    }

    /// <summary>Throws <see cref="StickyError"/> if there is one.</summary>
    public void ThrowIfFailed()
    {
        lock (_gate)
            if (_sticky is { } failed)
                throw failed;
    }

    /// <summary>Queues <paramref name="run"/> on <paramref name="stream"/>; returns its position in that stream.</summary>
    public long Submit(nint stream, string what, Action run, long snapshotBytes = 0)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            var queue = Queue(stream);
            queue.Pending.Enqueue(new Work(++queue.Submitted, what, run, snapshotBytes));
            queue.SnapshotBytes += snapshotBytes;
            long sequence = queue.Submitted;
            if (queue.SnapshotBytes > MaxPendingSnapshotBytes)
                Run(stream, queue, sequence);
            return sequence;
        }
    }

    /// <summary>Runs everything queued on <paramref name="stream"/>.</summary>
    public void Drain(nint stream)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            if (_streams.TryGetValue(stream, out var queue))
                Run(stream, queue, queue.Submitted);
        }
    }

    /// <summary>
    /// Runs every stream's queue (what the driver's implicitly synchronising calls, such as a free, wait for). After a
    /// failure there is nothing left to run, and nothing is thrown: releasing must go on (<c>BestEffortRelease</c>).
    /// </summary>
    public void DrainAll()
    {
        lock (_gate)
            if (_sticky is null)
                foreach (var (stream, queue) in _streams.ToArray())
                    Run(stream, queue, queue.Submitted);
    }

    /// <summary>
    /// Forgets a destroyed stream after running what it still holds (the driver finishes it too), and the events
    /// recorded on it, which that run completed: the stream's handle may come back for a new stream.
    /// </summary>
    public void Remove(nint stream)
    {
        lock (_gate)
        {
            try
            {
                if (_sticky is null && _streams.TryGetValue(stream, out var queue))
                    Run(stream, queue, queue.Submitted);
            }
            finally
            {
                _streams.Remove(stream);
                foreach (var (gpuEvent, at) in _events.ToArray())
                    if (at.Stream == stream)
                        _events.Remove(gpuEvent);
            }
        }
    }

    /// <summary>Queues the record of <paramref name="gpuEvent"/>: it completes when the stream reaches it.</summary>
    public void Record(nint gpuEvent, nint stream, Action record)
    {
        lock (_gate)
            _events[gpuEvent] = (stream, Submit(stream, $"record of event 0x{gpuEvent:x}", record));
    }

    /// <summary>Runs the event's stream up to its latest record. An event never recorded is complete, as in CUDA.</summary>
    public void Synchronize(nint gpuEvent)
    {
        lock (_gate)
        {
            ThrowIfFailed();
            if (_events.TryGetValue(gpuEvent, out var at) && _streams.TryGetValue(at.Stream, out var queue))
                Run(at.Stream, queue, at.Sequence);
        }
    }

    /// <summary>Whether the event's latest record has run (cuEventQuery's CUDA_SUCCESS).</summary>
    public bool IsComplete(nint gpuEvent)
    {
        lock (_gate)
            return !_events.TryGetValue(gpuEvent, out var at) || !_streams.TryGetValue(at.Stream, out var queue) || queue.Completed >= at.Sequence;
    }

    /// <summary>Forgets a destroyed event.</summary>
    public void RemoveEvent(nint gpuEvent)
    {
        lock (_gate)
            _events.Remove(gpuEvent);
    }

    /// <summary>Work queued on any stream and not yet run.</summary>
    public int PendingCount
    {
        get
        {
            lock (_gate)
                return _streams.Values.Sum(q => q.Pending.Count);
        }
    }

    StreamQueue Queue(nint stream)
    {
        if (!_streams.TryGetValue(stream, out var queue))
            _streams[stream] = queue = new StreamQueue();
        return queue;
    }

    void Run(nint stream, StreamQueue queue, long upTo)
    {
        while (queue.Pending.Count > 0 && queue.Pending.Peek().Sequence <= upTo)
        {
            var work = queue.Pending.Dequeue();
            queue.SnapshotBytes -= work.SnapshotBytes;
            try
            {
                work.Run();
            }
            catch (EmuException e)
            {
                // A failed kernel leaves a GPU context unusable, so no queued work runs there any more; the error
                // reaches the host at its next wait, as CUDA reports an asynchronous failure, and at every one after.
                foreach (var other in _streams.Values)
                {
                    other.SnapshotBytes = 0;
                    other.Completed = other.Submitted;
                    other.Pending.Clear();
                }
                _events.Clear();
                _sticky = new EmuException(e.Result, e.ErrorName,
                    $"{work.What} (queued on stream 0x{stream:x}, run when the host waited for it)", e.Detail);
                throw _sticky;
            }
            queue.Completed = work.Sequence;
        }
    }

    sealed class StreamQueue
    {
        public readonly Queue<Work> Pending = new();
        public long Submitted;
        public long Completed;
        public long SnapshotBytes;
    }

    readonly record struct Work(long Sequence, string What, Action Run, long SnapshotBytes);
}

/// <summary>When the emulator runs the work queued on its streams.</summary>
internal enum EmuExecution
{
    /// <summary>
    /// Only when the host must wait for it, as late as a GPU may run it (the default): a missing synchronisation
    /// shows as stale results. See <see cref="DeferredStreams"/>.
    /// </summary>
    Deferred,

    /// <summary>At submission: every stream is always idle (the emulator's original mode; easier to step through).</summary>
    Immediate,
}
