using E3.Interop.Kernels;
using E3.Pruning.Masking;
using Xunit;

namespace E3.Tests.Masking;

public sealed class MaskInputValidationTests
{
    private static readonly float[] Logits = [0.1f, 0.2f, 0.3f, 0.4f];

    [Theory]
    [InlineData(4, 0, 2, 1f, "keep", "0")]
    [InlineData(4, -1, 2, 1f, "keep", "-1")]
    [InlineData(4, 5, 2, 1f, "keep", "5")]
    [InlineData(4, 2, 0, 1f, "samples", "0")]
    [InlineData(4, 2, 2, 0f, "temperature", "0")]
    [InlineData(4, 2, 2, -0.5f, "temperature", "-0.5")]
    [InlineData(4, 2, 2, float.NaN, "temperature", "NaN")]
    [InlineData(4, 2, 2, float.PositiveInfinity, "temperature", "Infinity")]
    [InlineData(0, 1, 2, 1f, "layers", "0")]
    [InlineData(257, 1, 2, 1f, "layers", "257")]
    public void BadShapesAndTemperaturesNameFieldAndValue(int layers, int keep, int samples, float tau, string field, string value)
    {
        var spec = new GumbelTopKSpec(layers, keep, samples, tau, 1, 0);
        var error = Assert.Throws<MaskSamplerException>(() => spec.Validate());
        Assert.Equal(field, error.Field);
        Assert.Contains($"{field} = {value}", error.Message);
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "Infinity")]
    [InlineData(float.NegativeInfinity, "-Infinity")]
    public void NonFiniteLogitsNameTheLayer(float bad, string shown)
    {
        float[] logits = [0.1f, 0.2f, bad, 0.4f];
        var spec = new GumbelTopKSpec(4, 2, 3, 1f, 1, 0);
        var error = Assert.Throws<MaskSamplerException>(() => new CpuGumbelTopK().Forward(logits, spec, new float[12], new float[12]));
        Assert.Equal("logits[2]", error.Field);
        Assert.Contains($"logits[2] = {shown}", error.Message);
        Assert.Throws<MaskSamplerException>(() => DeterministicMask.TopK(logits, 2, new float[4]));
    }

    [Fact]
    public void WrongBufferLengthsAreRejectedBeforeAnyWork()
    {
        var spec = new GumbelTopKSpec(4, 2, 3, 1f, 1, 0);
        var sampler = new CpuGumbelTopK();
        Assert.Equal("hard.Length", Assert.Throws<MaskSamplerException>(() => sampler.SampleHard(Logits, spec, new float[11])).Field);
        Assert.Equal("logits.Length", Assert.Throws<MaskSamplerException>(() => sampler.SampleHard(Logits[..3], spec, new float[12])).Field);
        Assert.Equal("gradLogits.Length", Assert.Throws<MaskSamplerException>(() =>
            sampler.ForwardBackward(Logits, spec, new float[12], new float[12], new float[12], new float[3])).Field);
        var nanGrad = new float[12];
        nanGrad[7] = float.NaN;
        Assert.Equal("gradMask[7]", Assert.Throws<MaskSamplerException>(() =>
            sampler.ForwardBackward(Logits, spec, nanGrad, new float[12], new float[12], new float[4])).Field);
        Assert.Equal("relaxation", Assert.Throws<MaskSamplerException>(() =>
            (spec with { Relaxation = (GumbelRelaxation)7 }).Validate()).Field);
    }
}
