using E3.Interop.Gpu;
using E3.Interop.Kernels.Bench;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary>
/// The event timer's cold start, on the emulator's events: the L2 flush is enqueued before every timed run and never
/// before a warm-up run, and it lies outside the two events. The flush size follows the device's L2.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EventBenchTimerTests(EmuFixture fixture)
{
    [Fact]
    public void TheColdStartPrecedesEachTimedRunOutsideTheEvents()
    {
        using var emu = EmuDeviceScope.After(fixture);
        var calls = new List<string>();
        using var timer = new EventBenchTimer(emu.Device, emu.Stream.Handle, () =>
        {
            calls.Add("cold");
            Thread.Sleep(30); // the emulator's stream runs on the host: a slow cold start must not reach the events' interval
        });
        double ms = timer.MedianMilliseconds(() => calls.Add("run"), warmup: 2, repeats: 3);
        Assert.Equal(["run", "run", "cold", "run", "cold", "run", "cold", "run"], calls);
        Assert.True(ms < 30, $"the cold start's 30 ms leaked into the timed interval: median {ms} ms");
    }

    [Fact]
    public void TheFlushIsFourTimesTheL2()
    {
        var h200 = new GpuDeviceInfo(0, "H200", 90, 132, 141L << 30, L2CacheBytes: 52_428_800, MaxSharedMemoryPerBlockOptIn: 232_448);
        Assert.Equal(4L * 52_428_800, GpuKernelBenchmark.FlushBytes(h200));
        Assert.Equal(0, GpuKernelBenchmark.FlushBytes(h200 with { L2CacheBytes = 0 }));
    }
}
