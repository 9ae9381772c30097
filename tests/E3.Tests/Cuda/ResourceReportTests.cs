using E3.Interop.Kernels;
using Xunit;

namespace E3.Tests.Cuda;

public sealed class ResourceReportTests
{
    [Fact]
    public void ParsesEntriesSpillsSharedAndBarriers()
    {
        // The shapes ptxas prints: with and without smem, with a "used N barriers" field (newer ptxas), a
        // spilling kernel, and a non-entry device function whose properties must not be attributed to an entry.
        const string log = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'e3_a' for 'sm_90'
            ptxas info    : Function properties for e3_a
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 16 registers, 128 bytes smem, 392 bytes cmem[0]
            ptxas info    : Function properties for helper
                24 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
            ptxas info    : Compiling entry function 'e3_b' for 'sm_90'
            ptxas info    : Function properties for e3_b
                40 bytes stack frame, 36 bytes spill stores, 32 bytes spill loads
            ptxas info    : Used 255 registers, used 1 barriers, 40 bytes cumulative stack size, 380 bytes cmem[0]
            """;

        var report = ResourceReport.Parse(log);

        Assert.Equal(
        [
            new KernelResources("e3_a", "sm_90", 16, 128, 392, 0, 0, 0),
            new KernelResources("e3_b", "sm_90", 255, 0, 380, 40, 36, 32),
        ], report);
        Assert.False(report[0].HasSpills);
        Assert.True(report[1].HasSpills);
    }

    [Fact]
    public void EmptyLogHasNoEntries() => Assert.Empty(ResourceReport.Parse(""));
}
