using E3.Interop.Emulator;
using E3.Interop.Gpu;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The emulator as an <see cref="IGpuDevice"/>, on the test library that <see cref="E3.Tests.Emulator.EmuFixture"/>
/// loads (one emulator library per process), with a stream. Tests using it join the emulator collection so that
/// launches never interleave across threads. Buffers uploaded without an owner list belong to the scope and are freed
/// with it.
/// </summary>
internal sealed class EmuDeviceScope : IDisposable
{
    public EmuDeviceScope()
    {
        Device = GpuDevices.OpenEmulator(EmuLibrary.TestFileName);
        Stream = Device.CreateOwnedStream();
    }

    /// <summary>A scope opened after <paramref name="fixture"/> has loaded the emulator library (one per process).</summary>
    public static EmuDeviceScope After(E3.Tests.Emulator.EmuFixture fixture)
    {
        _ = fixture.Device;
        return new EmuDeviceScope();
    }

    readonly List<DeviceBuffer> _uploads = [];

    public IGpuDevice Device { get; }
    public OwnedStream Stream { get; }

    /// <summary><paramref name="values"/> in a fresh buffer that the scope frees.</summary>
    public DevicePointer<T> Upload<T>(ReadOnlySpan<T> values) where T : unmanaged => Upload(_uploads, values);

    public DevicePointer<T> Upload<T>(List<DeviceBuffer> owned, ReadOnlySpan<T> values) where T : unmanaged
    {
        var buffer = Device.AllocateBuffer(Math.Max(1, values.Length) * (long)System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        owned.Add(buffer);
        Device.CopyToDevice(buffer.As<T>(), values, Stream.Handle);
        return buffer.As<T>();
    }

    /// <summary>
    /// <paramref name="values"/> starting <paramref name="offset"/> elements into a fresh (256-byte-aligned) buffer: an
    /// offset of one bf16 element makes every pointer misaligned for 16-byte accesses, so kernels take their scalar path.
    /// </summary>
    public DevicePointer<T> UploadAt<T>(T[] values, int offset) where T : unmanaged
    {
        var padded = new T[values.Length + 8];
        values.CopyTo(padded, offset);
        return Upload<T>(padded).Offset(offset);
    }

    public T[] Download<T>(DevicePointer<T> source, int count) where T : unmanaged
    {
        var result = new T[count];
        Device.CopyToHost<T>(result, source, Stream.Handle);
        return result;
    }

    public void Dispose()
    {
        foreach (var buffer in _uploads) buffer.Dispose();
        Stream.Dispose();
        Device.Dispose();
    }
}
