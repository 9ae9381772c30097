using E3.Pruning.Masking;
using Xunit;

namespace E3.Tests.Masking;

public sealed class ScheduleTests
{
    [Theory]
    [InlineData(AnnealKind.Exponential)]
    [InlineData(AnnealKind.Linear)]
    [InlineData(AnnealKind.Cosine)]
    public void TemperatureStartsAtTau0EndsAtTauMinAndNeverRises(AnnealKind kind)
    {
        var schedule = new TemperatureSchedule(5.0, 0.1, 1000, kind);
        Assert.Equal(5.0f, schedule.At(0));
        Assert.Equal(5.0f, schedule.At(-3));
        Assert.Equal(0.1f, schedule.At(1000));
        Assert.Equal(0.1f, schedule.At(50_000));
        for (var step = 1; step <= 1000; step++)
            Assert.True(schedule.At(step) <= schedule.At(step - 1), $"{kind} rises at step {step}");
    }

    [Fact]
    public void CurvesHaveTheirDefiningShapes()
    {
        // Exponential: the log falls linearly, so the midpoint is the geometric mean; linear: arithmetic mean;
        // cosine: also the arithmetic mean at the midpoint, and 1/4 of the way down at 1/3 of the steps
        // ((1 + cos(pi/3)) / 2 = 3/4 of the range left). fp32 results: compare to 1e-6 relative.
        Assert.Equal(Math.Sqrt(4.0 * 0.25), new TemperatureSchedule(4, 0.25, 100, AnnealKind.Exponential).At(50), 1e-6);
        Assert.Equal(2.125, new TemperatureSchedule(4, 0.25, 100, AnnealKind.Linear).At(50), 1e-6);
        Assert.Equal(2.125, new TemperatureSchedule(4, 0.25, 100, AnnealKind.Cosine).At(50), 1e-6);
        Assert.Equal(0.25 + 0.75 * 3.75, new TemperatureSchedule(4, 0.25, 300, AnnealKind.Cosine).At(100), 1e-6);
        var exponential = new TemperatureSchedule(8, 1, 3, AnnealKind.Exponential);
        Assert.Equal([8f, 4f, 2f, 1f], [exponential.At(0), exponential.At(1), exponential.At(2), exponential.At(3)]);
    }

    [Fact]
    public void CurriculumRampsTheKeptCountToTheTarget()
    {
        var curriculum = new KeepCurriculum(64, 64, 48, 160);
        Assert.Equal(64, curriculum.At(0));
        Assert.Equal(56, curriculum.At(80));
        Assert.Equal(48, curriculum.At(160));
        Assert.Equal(48, curriculum.At(10_000));
        // One layer every 10 steps; step 15 gives 62.5, which rounds half away from zero to 63.
        Assert.Equal(63, curriculum.At(15));
        for (var step = 1; step <= 160; step++)
            Assert.InRange(curriculum.At(step - 1) - curriculum.At(step), 0, 1);
        Assert.Equal(12, new KeepCurriculum(16, 4, 12, 8).At(8));
    }

    [Fact]
    public void BadSchedulesNameTheirField()
    {
        Assert.Equal("temperature.start", Assert.Throws<MaskSamplerException>(() => new TemperatureSchedule(0, 0, 10, AnnealKind.Linear)).Field);
        Assert.Equal("temperature.floor", Assert.Throws<MaskSamplerException>(() => new TemperatureSchedule(1, 2, 10, AnnealKind.Linear)).Field);
        Assert.Equal("temperature.floor", Assert.Throws<MaskSamplerException>(() => new TemperatureSchedule(1, 0, 10, AnnealKind.Linear)).Field);
        Assert.Equal("temperature.steps", Assert.Throws<MaskSamplerException>(() => new TemperatureSchedule(1, 0.5, 0, AnnealKind.Linear)).Field);
        Assert.Equal("curriculum.warmupKeep", Assert.Throws<MaskSamplerException>(() => new KeepCurriculum(8, 9, 4, 10)).Field);
        Assert.Equal("curriculum.targetKeep", Assert.Throws<MaskSamplerException>(() => new KeepCurriculum(8, 8, 0, 10)).Field);
        Assert.Equal("curriculum.steps", Assert.Throws<MaskSamplerException>(() => new KeepCurriculum(8, 8, 4, 0)).Field);
    }
}
