namespace E3.Interop.Emulator;

/// <summary>An emulator stream. Work runs synchronously at submission, so a stream is always idle.</summary>
internal sealed class EmuStream : IDisposable
{
    internal EmuStream(nint handle) => Handle = handle;

    /// <summary>The native handle (never zero while alive; zero is the default stream).</summary>
    public nint Handle { get; private set; }

    public void Synchronize() => EmuNative.Check(EmuNative.StreamSynchronize(Handle));

    public void Dispose()
    {
        if (Handle == 0) return;
        var handle = Handle;
        Handle = 0;
        EmuNative.Check(EmuNative.StreamDestroy(handle));
    }
}

/// <summary>An emulator event: records the wall-clock time at which it is recorded.</summary>
internal sealed class EmuEvent : IDisposable
{
    internal EmuEvent(nint handle) => Handle = handle;

    public nint Handle { get; private set; }

    /// <summary>Records the event on <paramref name="stream"/> (null: the default stream).</summary>
    public void Record(EmuStream? stream = null) => EmuNative.Check(EmuNative.EventRecord(Handle, stream?.Handle ?? 0));

    public void Synchronize() => EmuNative.Check(EmuNative.EventSynchronize(Handle));

    /// <summary>Milliseconds between two recorded events, like cuEventElapsedTime.</summary>
    public static float ElapsedMilliseconds(EmuEvent start, EmuEvent end)
    {
        EmuNative.Check(EmuNative.EventElapsedTime(out var ms, start.Handle, end.Handle));
        return ms;
    }

    public void Dispose()
    {
        if (Handle == 0) return;
        var handle = Handle;
        Handle = 0;
        EmuNative.Check(EmuNative.EventDestroy(handle));
    }
}
