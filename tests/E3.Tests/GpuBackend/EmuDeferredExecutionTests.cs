using E3.Backends;
using E3.Backends.Gpu;
using E3.Interop.Emulator;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Model;
using E3.Model.Decoder;
using E3.Tests.Support;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The emulator's deferred streams: work runs when the host waits for it, with the driver's rules for pageable and
/// pinned copies, so that the GPU backend's tests (all of which run deferred) would see stale memory wherever a
/// synchronisation is missing. Each test shows one kind of missing wait giving the wrong answer, and the wait that
/// fixes it.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed unsafe class EmuDeferredExecutionTests(EmuFixture fixture) : IDisposable
{
    const int Words = 64;
    readonly EmuGpuDevice _device = Open(fixture, EmuExecution.Deferred);

    static EmuGpuDevice Open(EmuFixture fixture, EmuExecution execution)
    {
        _ = fixture.Device;
        return EmuGpuDevice.Open(EmuLibrary.TestFileName, execution);
    }

    [Fact]
    public void TheEmulatorDefersUnlessTheEnvironmentSaysImmediate()
    {
        Assert.Equal(EmuExecution.Deferred, _device.Execution);
        // The variable itself is left alone: other test classes open emulators in parallel.
        Assert.Equal(EmuExecution.Deferred, EmuGpuDevice.ParseExecution(null));
        Assert.Equal(EmuExecution.Deferred, EmuGpuDevice.ParseExecution(""));
        Assert.Equal(EmuExecution.Immediate, EmuGpuDevice.ParseExecution("Immediate"));
        var error = Assert.Throws<ArgumentException>(() => EmuGpuDevice.ParseExecution("later"));
        Assert.Contains("E3_EMU_EXECUTION=later", error.Message);
    }

    /// <summary>CI runs the kernel tests a second time with E3EMU_THREAD_ORDER=reverse: it must reach the library.</summary>
    [Fact]
    public void TheThreadOrderIsTheOneTheEnvironmentAsks()
    {
        var asked = Environment.GetEnvironmentVariable("E3EMU_THREAD_ORDER");
        Assert.Equal(asked == "reverse" ? EmuThreadOrder.Reverse : EmuThreadOrder.Forward, _device.ThreadOrder);
    }

    [Fact]
    public void APinnedReadBackHoldsTheResultOnlyAfterTheStreamIsWaitedFor()
    {
        using var stream = _device.CreateOwnedStream();
        using var buffer = _device.AllocateBuffer(Words * sizeof(uint));
        using var host = _device.AllocatePinnedBuffer(Words * sizeof(uint));
        var values = new Span<uint>(host.Pointer, Words);
        values.Fill(7);

        _device.FillWordsAsync(buffer.Pointer, 0xabcdu, Words, stream.Handle);
        _device.CopyToHostAsync(host.Pointer, buffer.Pointer, Words * sizeof(uint), stream.Handle);
        Assert.Equal(2, _device.PendingOperations);
        Assert.All(values.ToArray(), v => Assert.Equal(7u, v)); // read too early: the copy has not run

        stream.Synchronize();
        Assert.Equal(0, _device.PendingOperations);
        Assert.All(values.ToArray(), v => Assert.Equal(0xabcdu, v));
    }

    [Fact]
    public void PageableCopiesFollowTheDriver()
    {
        using var stream = _device.CreateOwnedStream();
        using var buffer = _device.AllocateBuffer(Words * sizeof(uint));
        var source = Enumerable.Range(0, Words).Select(i => (uint)i).ToArray();

        // From pageable memory the source is taken at the call: overwriting it afterwards changes nothing.
        _device.CopyToDevice(buffer.As<uint>(), source, stream.Handle);
        Array.Fill(source, 99u);
        Assert.Equal(1, _device.PendingOperations);

        // Into pageable memory the call returns with the copy done, after the stream's earlier work.
        var back = new uint[Words];
        fixed (uint* b = back)
            _device.CopyToHostAsync(b, buffer.Pointer, Words * sizeof(uint), stream.Handle);
        Assert.Equal(0, _device.PendingOperations);
        Assert.Equal(Enumerable.Range(0, Words).Select(i => (uint)i), back);
    }

    [Fact]
    public void AStreamThatReadsAnotherStreamsResultMustWaitForIt()
    {
        using var producer = _device.CreateOwnedStream();
        using var consumer = _device.CreateOwnedStream();
        using var source = _device.AllocateBuffer(Words * sizeof(uint));
        using var target = _device.AllocateBuffer(Words * sizeof(uint));
        _device.FillWordsAsync(source.Pointer, 1u, Words, producer.Handle);
        producer.Synchronize();
        _device.FillWordsAsync(target.Pointer, 0u, Words, consumer.Handle);

        // The producer writes 2s; the consumer copies without waiting for it and sees the 1s of before.
        _device.FillWordsAsync(source.Pointer, 2u, Words, producer.Handle);
        _device.CopyAsync(target.Pointer, source.Pointer, Words * sizeof(uint), consumer.Handle);
        Assert.All(Read(target, consumer), v => Assert.Equal(1u, v));

        // Waiting for the producer first (what GpuBackend.Shared does for a sibling's tensor) gives the 2s.
        producer.Synchronize();
        _device.CopyAsync(target.Pointer, source.Pointer, Words * sizeof(uint), consumer.Handle);
        Assert.All(Read(target, consumer), v => Assert.Equal(2u, v));
    }

    [Fact]
    public void ATimingNeedsItsEndEventToHaveRun()
    {
        using var stream = _device.CreateOwnedStream();
        using var buffer = _device.AllocateBuffer(Words * sizeof(uint));
        using var start = _device.CreateOwnedEvent();
        using var end = _device.CreateOwnedEvent();
        start.Record(stream.Handle);
        _device.FillWordsAsync(buffer.Pointer, 3u, Words, stream.Handle);
        end.Record(stream.Handle);

        var early = Assert.Throws<EmuException>(() => _device.ElapsedMilliseconds(start.Handle, end.Handle));
        Assert.Equal(EmuResult.NotReady, early.Result);
        Assert.Equal("CUDA_ERROR_NOT_READY", early.ErrorName);

        end.Synchronize();
        Assert.Equal(0, _device.PendingOperations);
        Assert.True(_device.ElapsedMilliseconds(start.Handle, end.Handle) >= 0);
    }

    [Fact]
    public void AnEventWaitRunsItsStreamOnlyUpToTheRecord()
    {
        using var stream = _device.CreateOwnedStream();
        using var buffer = _device.AllocateBuffer(Words * sizeof(uint));
        using var mark = _device.CreateOwnedEvent();
        _device.FillWordsAsync(buffer.Pointer, 4u, Words, stream.Handle);
        mark.Record(stream.Handle);
        _device.FillWordsAsync(buffer.Pointer, 5u, Words, stream.Handle);

        mark.Synchronize();
        Assert.Equal(1, _device.PendingOperations);
        Assert.All(Read(buffer, stream), v => Assert.Equal(5u, v)); // the pageable read runs the rest
    }

    [Fact]
    public void AKernelFailureIsReportedAtTheWaitNamesTheKernelAndStays()
    {
        using var stream = _device.CreateOwnedStream();
        using var module = _device.LoadOwnedModule("faults");
        var kernel = module.GetFunction("e3t_barrier_divergence");
        using var x = _device.AllocateBuffer(64 * sizeof(float));
        using var start = _device.CreateOwnedEvent();
        using var end = _device.CreateOwnedEvent();
        start.Record(stream.Handle);
        var args = new KernelArgs();
        args.Add(x.Pointer);
        args.Add(40); // threads 40..63 leave before the barrier
        _device.Launch(kernel, new LaunchShape(new E3.Interop.Gpu.Dim3(1), new E3.Interop.Gpu.Dim3(64), 0), stream.Handle, args); // queued: no error yet
        _device.FillWordsAsync(x.Pointer, 0u, 64, stream.Handle);
        end.Record(stream.Handle);

        var error = Assert.Throws<EmuException>(stream.Synchronize);
        Assert.Equal(EmuResult.LaunchFailed, error.Result);
        Assert.Contains("launch of e3t_barrier_divergence (queued on stream", error.Message);
        Assert.Contains("barrier divergence", error.Detail);
        Assert.Equal(0, _device.PendingOperations); // nothing queued runs after it, as in a failed context

        // Sticky, as a fault is on a GPU: every later wait, submission and timing reports it again.
        Assert.Same(error, Assert.Throws<EmuException>(stream.Synchronize));
        Assert.Same(error, Assert.Throws<EmuException>(() => _device.FillWordsAsync(x.Pointer, 1u, 64, stream.Handle)));
        Assert.Same(error, Assert.Throws<EmuException>(() => _device.ElapsedMilliseconds(start.Handle, end.Handle)));
        // Releasing still works, without throwing (the usings above run after this).
        _device.AllocateBuffer(16, stream.Handle).Dispose();
    }

    [Fact]
    public void AnInvalidLaunchOrCopyIsRefusedAtTheCallAndTheStreamGoesOn()
    {
        using var stream = _device.CreateOwnedStream();
        using var module = _device.LoadOwnedModule("faults");
        var kernel = module.GetFunction("e3t_barrier_divergence");
        using var x = _device.AllocateBuffer(Words * sizeof(uint));
        var shape = new LaunchShape(new E3.Interop.Gpu.Dim3(0), new E3.Interop.Gpu.Dim3(64), 0);
        var launch = Assert.Throws<EmuException>(() =>
        {
            var args = new KernelArgs();
            args.Add(x.Pointer);
            args.Add(64);
            _device.Launch(kernel, shape, stream.Handle, args);
        });
        Assert.Equal(EmuResult.InvalidValue, launch.Result);
        Assert.Contains("invalid grid (0,1,1)", launch.Detail);

        var copy = Assert.Throws<EmuException>(() => _device.FillWordsAsync(x.Pointer, 1u, Words + 1, stream.Handle));
        Assert.Contains("is not inside one allocation", copy.Detail);
        Assert.Equal(0, _device.PendingOperations); // neither was queued

        _device.FillWordsAsync(x.Pointer, 7u, Words, stream.Handle);
        Assert.All(Read(x, stream), v => Assert.Equal(7u, v));
    }

    [Fact]
    public void EventsOfADestroyedStreamStayCompleteWhenItsHandleComesBack()
    {
        using var buffer = _device.AllocateBuffer(Words * sizeof(uint));
        using var start = _device.CreateOwnedEvent();
        using var end = _device.CreateOwnedEvent();
        var first = _device.CreateOwnedStream();
        start.Record(first.Handle);
        _device.FillWordsAsync(buffer.Pointer, 1u, Words, first.Handle);
        end.Record(first.Handle);
        end.Synchronize();
        first.Dispose();

        // Whatever handle the next stream gets, work queued on it does not make the old events pending again.
        using var second = _device.CreateOwnedStream();
        _device.FillWordsAsync(buffer.Pointer, 2u, Words, second.Handle);
        Assert.True(_device.ElapsedMilliseconds(start.Handle, end.Handle) >= 0);
        start.Synchronize();
        Assert.Equal(1, _device.PendingOperations); // waiting on an old event did not run the new stream
    }

    [Fact]
    public void ALaunchKeepsTheArgumentValuesOfItsCall()
    {
        using var stream = _device.CreateOwnedStream();
        using var kernels = new ConvertKernels(_device);
        var values = new[] { 1.5f, -2.25f, 3f, 1e-3f };
        using var src = _device.AllocateBuffer(values.Length * sizeof(float));
        using var two = _device.AllocateBuffer(values.Length * sizeof(ushort));
        using var four = _device.AllocateBuffer(values.Length * sizeof(ushort));
        _device.CopyToDevice(src.As<float>(), values, stream.Handle);
        _device.FillWordsAsync(two.Pointer, 0u, values.Length / 2, stream.Handle);
        _device.FillWordsAsync(four.Pointer, 0u, values.Length / 2, stream.Handle);
        // Both launches are queued before either runs; each must run with its own count and output.
        kernels.ToBf16(src.As<float>(), two.As<Bf16>(), 2, stream.Handle);
        kernels.ToBf16(src.As<float>(), four.As<Bf16>(), 4, stream.Handle);
        Assert.Equal(5, _device.PendingOperations);
        var partial = new ushort[values.Length];
        var whole = new ushort[values.Length];
        _device.CopyToHost(partial.AsSpan(), two.As<ushort>(), stream.Handle);
        _device.CopyToHost(whole.AsSpan(), four.As<ushort>(), stream.Handle);
        Assert.Equal([whole[0], whole[1], (ushort)0, (ushort)0], partial);
        Assert.DoesNotContain((ushort)0, whole);
    }

    [Fact]
    public void AFreeInStreamOrderWaitsForTheWorkQueuedBeforeIt()
    {
        using var stream = _device.CreateOwnedStream();
        var buffer = _device.AllocateBuffer(Words * sizeof(uint), stream.Handle);
        using var copy = _device.AllocateBuffer(Words * sizeof(uint));
        _device.FillWordsAsync(buffer.Pointer, 6u, Words, stream.Handle);
        _device.CopyAsync(copy.Pointer, buffer.Pointer, Words * sizeof(uint), stream.Handle);
        long live = _device.Allocations.LiveBytes;
        buffer.Dispose(); // stream-ordered: the fill and copy queued before it still read valid memory
        Assert.Equal(live - Words * sizeof(uint), _device.Allocations.LiveBytes);
        Assert.Equal(3, _device.PendingOperations);
        Assert.All(Read(copy, stream), v => Assert.Equal(6u, v));
    }

    /// <summary>
    /// The GPU backend gives the same bits deferred as immediate, prefill and KV-cached decode: the same work in the same
    /// stream order, only later.
    /// </summary>
    [Fact]
    public void TheGpuBackendGivesTheSameLogitsDeferredAsImmediate()
    {
        using var dir = new TempDir("e3-deferred");
        RandomModel.Write(new RandomModelSpec { Layers = 3, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 96, Vocab = 50, Seed = 5 }, dir["model"]);
        var mask = LayerMask.Dropping(3, [1]);
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6];
        float[] Logits(EmuExecution execution)
        {
            using var device = Open(fixture, execution);
            using var backend = new E3.Backends.Gpu.GpuBackend(device, DType.BF16, ownsDevice: false);
            using var model = DecoderModel.Load(dir["model"], backend, WeightPrecision.BF16);
            using var session = model.StartSession(mask, batch: 1, capacity: 10);
            return [.. model.Forward(prompt, mask), .. session.Forward(prompt, LogitsMode.Last), .. session.Forward([7], LogitsMode.All)];
        }
        var deferred = Logits(EmuExecution.Deferred);
        var immediate = Logits(EmuExecution.Immediate);
        Assert.Equal(immediate, deferred);
        Assert.Contains(deferred, v => v != 0);
    }

    /// <summary>
    /// CudaDevice makes its context current when opened and in its allocation, stream, event and module calls, not per
    /// launch; a thread that never did one of those would fail its first launch on a GPU. The emulator fails it too.
    /// </summary>
    [Fact]
    public void AThreadThatNeverMadeTheContextCurrentCannotLaunchCopyOrWait()
    {
        using var stream = _device.CreateOwnedStream();
        using var buffer = _device.AllocateBuffer(Words * sizeof(uint));
        Exception? refused = null;
        var other = new Thread(() => refused = Record.Exception(() => _device.FillWordsAsync(buffer.Pointer, 1u, Words, stream.Handle)));
        other.Start();
        other.Join();
        var error = Assert.IsType<EmuException>(refused);
        Assert.Equal(EmuResult.InvalidContext, error.Result);
        Assert.Equal("CUDA_ERROR_INVALID_CONTEXT", error.ErrorName);
        Assert.Contains("cuMemsetD32Async", error.Message);

        // An allocation on that thread makes the context current there, as CudaDevice's does.
        uint[]? seen = null;
        var allocating = new Thread(() =>
        {
            using var own = _device.AllocateBuffer(Words * sizeof(uint));
            _device.FillWordsAsync(own.Pointer, 9u, Words, stream.Handle);
            seen = Read(own, stream);
        });
        allocating.Start();
        allocating.Join();
        Assert.All(seen!, v => Assert.Equal(9u, v));
    }

    uint[] Read(DeviceBuffer buffer, OwnedStream stream)
    {
        var values = new uint[Words];
        _device.CopyToHost(values.AsSpan(), buffer.As<uint>(), stream.Handle);
        return values;
    }

    public void Dispose() => _device.Dispose();
}
