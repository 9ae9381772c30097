using E3.Backends.Cpu.Threading;
using Xunit;

namespace E3.Tests.Threading;

/// <summary>The fork-join pool under the CPU kernels: every item exactly once, failures surfaced, no deadlock when
/// regions nest or when several threads start regions at once.</summary>
public sealed class ComputePoolTests
{
    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 2)]
    [InlineData(7, 1)]
    [InlineData(1000, 8)]
    [InlineData(100_000, 2)]
    public void EveryItemRunsExactlyOnce(int count, int threads)
    {
        var hits = new int[count];
        for (int round = 0; round < 20; round++)
        {
            ComputePool.Shared.For(count, threads, i => Interlocked.Increment(ref hits[i]));
            Assert.All(hits, h => Assert.Equal(round + 1, h));
        }
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(7, 2)]
    [InlineData(1000, 3)]
    [InlineData(128, 1)]
    public void RangesCoverEveryIndexExactlyOnce(long count, int threads)
    {
        var hits = new int[count];
        ComputePool.Shared.ForRanges(count, threads, (start, end) =>
        {
            Assert.True(start < end && end <= count, $"range [{start}, {end}) of {count}");
            for (long i = start; i < end; i++) Interlocked.Increment(ref hits[i]);
        });
        Assert.All(hits, h => Assert.Equal(1, h));
    }

    [Fact]
    public void AnItemsExceptionReachesTheCallerAndThePoolStaysUsable()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            ComputePool.Shared.For(64, 4, i => { if (i == 17) throw new InvalidOperationException("item 17"); }));
        Assert.Equal("item 17", error.Message);

        int sum = 0;
        ComputePool.Shared.For(64, 4, i => Interlocked.Add(ref sum, i));
        Assert.Equal(64 * 63 / 2, sum);
    }

    [Fact]
    public void ARegionStartedInsideAnItemRunsOnThatThread()
    {
        var inner = new int[16 * 16];
        ComputePool.Shared.For(16, 4, i =>
        {
            int thread = Environment.CurrentManagedThreadId;
            ComputePool.Shared.For(16, 4, j =>
            {
                Assert.Equal(thread, Environment.CurrentManagedThreadId);
                inner[i * 16 + j]++;
            });
        });
        Assert.All(inner, h => Assert.Equal(1, h));
    }

    [Fact]
    public void ConcurrentCallersEachGetAllTheirItems()
    {
        const int callers = 4, count = 5000;
        var hits = new int[callers, count];
        var threads = Enumerable.Range(0, callers).Select(c => new Thread(() =>
        {
            for (int round = 0; round < 50; round++) ComputePool.Shared.For(count, 4, i => Interlocked.Increment(ref hits[c, i]));
        })).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a caller did not finish");
        foreach (int h in hits) Assert.Equal(50, h);
    }
}
