using E3.Backends;
using E3.Interop.Driver;
using E3.Interop.Gpu;
using E3.Tests.Support;
using Xunit;
using Gpu = E3.Backends.Gpu.GpuBackend;

namespace E3.Tests.GpuBackend;

/// <summary>
/// After a fatal CUDA error every driver call fails with it. Disposing a backend then must neither throw (which would
/// replace the exception that reported the fault) nor stop releasing: <see cref="BestEffortRelease"/>.
/// </summary>
public sealed class StickyErrorDisposeTests
{
    static CudaException IllegalAddress() => new("cuStreamSynchronize", 700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered");

    [Fact]
    public void ABackendIsReleasedWholeAfterAFatalError()
    {
        var device = HostOnlyGpuDevice.H100();
        var backend = new Gpu(device, DType.BF16, ownsDevice: false);
        using (var t = backend.Allocate(DType.BF16, 4, 8)) { }
        int before = device.ReleaseCalls;
        device.StickyError = IllegalAddress();
        backend.Dispose(); // must not throw
        // The synchronize, then the module unloads, the buffers' frees and the stream's destruction were all attempted.
        Assert.True(device.ReleaseCalls - before >= 3, $"{device.ReleaseCalls - before} release calls after the fault");
    }

    [Fact]
    public void DeviceFailuresAreDroppedAndOtherErrorsRethrownAfterEveryStep()
    {
        var ran = new List<int>();
        BestEffortRelease.Run(() => { ran.Add(1); throw IllegalAddress(); }, () => ran.Add(2));
        Assert.Equal([1, 2], ran);

        ran.Clear();
        var bug = Assert.Throws<InvalidOperationException>(() =>
            BestEffortRelease.Run(() => { ran.Add(1); throw new InvalidOperationException("a bug, not a device fault"); }, () => ran.Add(2)));
        Assert.Equal("a bug, not a device fault", bug.Message);
        Assert.Equal([1, 2], ran);
    }
}
