using E3.Tests.Reference;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.ReferenceTests;

public class TorchReferenceTimerTests
{
    [Fact]
    public void ReportsTheMedianRepeatAndRestoresThreads()
    {
        using var folder = new ScratchFolder();
        // The 4-layer hidden-64 size the parity tests use.
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("qwen3", tied: true, layers: 4, hidden: 64), seed: 1);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path);
        int threadsBefore = torch.get_num_threads();

        var timing = TorchReferenceTimer.Measure(checkpoint, tokens: 16, batch: 2, threads: 1, warmup: 1, repeats: 5);

        Assert.Equal(threadsBefore, torch.get_num_threads());
        Assert.Equal(5, timing.Seconds.Count);
        Assert.All(timing.Seconds, s => Assert.True(s > 0));
        Assert.Equal(timing.Seconds.Order().ElementAt(2), timing.MedianSeconds);
        Assert.Equal(32 / timing.MedianSeconds, timing.TokensPerSecond, 9);
    }

    [Fact]
    public void EvenRepeatCountAveragesTheMiddlePair()
    {
        var timing = new ReferenceTiming(1, 1, 10, [4.0, 1.0, 3.0, 2.0]);
        Assert.Equal(2.5, timing.MedianSeconds);
        Assert.Equal(4.0, timing.TokensPerSecond);
    }

    [Fact]
    public void RefusesAFloat64Checkpoint()
    {
        using var folder = new ScratchFolder();
        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("llama", tied: true), seed: 1);
        using var checkpoint = ReferenceCheckpoint.Load(folder.Path, ScalarType.Float64);
        var error = Assert.Throws<ArgumentException>(() => TorchReferenceTimer.Measure(checkpoint, 4, 1, 1));
        Assert.Contains("Float64", error.Message);
    }
}
