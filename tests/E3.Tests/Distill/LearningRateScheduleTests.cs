using Xunit;
using E3.Pruning.Distill;

namespace E3.Tests.Distill;

/// <summary>The warmup + cosine schedule against its closed form, evaluated independently in double.</summary>
public sealed class LearningRateScheduleTests
{
    [Fact]
    public void WarmupThenCosineToTheFloor()
    {
        var s = new TrainingSettings { Tokens = 100 * 64, Sequence = 8, Batch = 8, LearningRate = 2e-3, Warmup = 10, MinLrRatio = 0.1 };
        Assert.Equal(100, s.TotalSteps);
        for (int step = 0; step < 100; step++)
        {
            double expected = step < 10
                ? 2e-3 * (step + 1) / 10
                : 2e-3 * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * (step - 10) / 89.0)));
            // Same formula in a different arrangement: agreement to a few ulps of 2e-3.
            Assert.True(Math.Abs(s.LearningRateAt(step) - expected) < 1e-15, $"step {step}: {s.LearningRateAt(step)} vs {expected}");
        }
        Assert.Equal(2e-3, s.LearningRateAt(10), 15);   // first step after warmup at the peak
        Assert.Equal(2e-4, s.LearningRateAt(99), 15);   // last step at the floor
        Assert.Equal(2e-3, (s with { Schedule = LrSchedule.Constant }).LearningRateAt(99));
    }

    [Theory]
    [InlineData("--seq", 1)]
    [InlineData("--batch", 0)]
    [InlineData("--grad-accum", 0)]
    public void OutOfRangeSettingsNameTheOption(string option, int value)
    {
        var s = option switch
        {
            "--seq" => new TrainingSettings { Sequence = value },
            "--batch" => new TrainingSettings { Batch = value },
            _ => new TrainingSettings { GradAccum = value },
        };
        var e = Assert.Throws<ArgumentException>(s.Validate);
        Assert.Contains(option, e.Message);
        Assert.Contains(value.ToString(), e.Message);
    }
}
