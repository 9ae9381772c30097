using E3.Backends.Numerics;
using E3.Interop.Kernels;
using E3.Pruning.Masking;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.Masking;

/// <summary>
/// The fused CPU relaxation and its straight-through gradient against a TorchSharp composite of the same
/// formulas with autograd, on the same noise.
/// </summary>
public sealed class RelaxationReferenceTests
{
    public static TheoryData<GumbelRelaxation, int, int, float> Cases() => new()
    {
        { GumbelRelaxation.SoftTopK, 8, 3, 1.0f },
        { GumbelRelaxation.SoftTopK, 8, 8, 0.5f },
        { GumbelRelaxation.SoftTopK, 64, 48, 0.7f },
        { GumbelRelaxation.SoftTopK, 37, 1, 2.0f },
        { GumbelRelaxation.Sigmoid, 8, 3, 1.0f },
        { GumbelRelaxation.Sigmoid, 64, 48, 0.7f },
        { GumbelRelaxation.Sigmoid, 37, 37, 0.5f },
        { GumbelRelaxation.Sigmoid, 37, 1, 2.0f },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void SoftMaskAndGradientMatchTorchAutograd(GumbelRelaxation relaxation, int layers, int keep, float tau)
    {
        const int samples = 32;
        var spec = new GumbelTopKSpec(layers, keep, samples, tau, 777, 5, relaxation);
        var random = new Random(layers * 100 + keep);
        var logits = Enumerable.Range(0, layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var gradMask = Enumerable.Range(0, samples * layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();

        var hard = new float[samples * layers];
        var soft = new float[samples * layers];
        var grad = new float[layers];
        new CpuGumbelTopK().ForwardBackward(logits, spec, gradMask, hard, soft, grad);

        var (referenceSoft, referenceGrad) = TorchReference(spec, logits, gradMask);
        var (exactSoft, exactGrad) = TorchReference(spec, logits, gradMask, ScalarType.Float64);

        // fp32 on both sides with different exp/log implementations and summation orders: each softmax step
        // carries a few ulp (~1e-7 relative) and the k steps compound them, so 1e-5 relative to the largest
        // magnitude leaves room for k = 48 steps while any formula error (a wrong step, a missing term of the
        // threshold gradient) shows up at 1e-2 or more. Elementwise relative error is not used: gradients that
        // cancel to ~0 have no meaningful relative accuracy.
        MaskAssert.Close(referenceSoft, soft, 1e-5, "soft mask");
        MaskAssert.Close(referenceGrad, grad, 1e-5, "dL/dalpha");
        // Against the same composite in fp64 (on the fp32-rounded inputs) the fused code measured <= 3e-7 here,
        // no worse than torch's own fp32 run: its leading-layer rewrites avoid the cancellations of the naive
        // composite. 2e-6 (about 16 fp32 ulp of the largest value) keeps that claim honest.
        MaskAssert.Close(exactSoft, soft, 2e-6, "soft mask vs fp64");
        MaskAssert.Close(exactGrad, grad, 2e-6, "dL/dalpha vs fp64");
        // Against the same composite in fp64 (on the fp32-rounded inputs) the fused code measured <= 3e-7 here,
        // better than torch's own fp32 run: its leading-layer rewrites avoid the cancellations of the naive
        // composite. 2e-6 (about 16 fp32 ulp of the largest value) keeps that claim honest.
        for (var s = 0; s < samples; s++)
        {
            Assert.Equal(keep, hard.AsSpan(s * layers, layers).ToArray().Sum());
            if (relaxation == GumbelRelaxation.SoftTopK)
                Assert.Equal(keep, soft.AsSpan(s * layers, layers).ToArray().Select(v => (double)v).Sum(), 1e-4);
        }
    }

    [Fact]
    public void SaturatedSmallTemperatureStaysWithinItsFp32Conditioning()
    {
        // tau = 0.1 with 12 of 16 kept: every step saturates (p rounds to 1 in fp32), and the 12 chained softmax
        // Jacobians scale by 1/tau each, so fp32 itself is only good to ~1e-4 here: torch's fp32 composite
        // measured 1.3e-4 from fp64 and the fused code 1.2e-4. The bound 5e-4 is that conditioning with margin;
        // a missing rewrite of q (1 - p by subtraction) leaves the soft mask wrong by O(1), far outside it.
        const int samples = 32, layers = 16, keep = 12;
        var spec = new GumbelTopKSpec(layers, keep, samples, 0.1f, 777, 5);
        var random = new Random(3);
        var logits = Enumerable.Range(0, layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var gradMask = Enumerable.Range(0, samples * layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] hard = new float[samples * layers], soft = new float[samples * layers], grad = new float[layers];
        new CpuGumbelTopK().ForwardBackward(logits, spec, gradMask, hard, soft, grad);
        var (exactSoft, exactGrad) = TorchReference(spec, logits, gradMask, ScalarType.Float64);
        MaskAssert.Close(exactSoft, soft, 5e-5, "soft mask vs fp64");
        MaskAssert.Close(exactGrad, grad, 5e-4, "dL/dalpha vs fp64");
        // Each step's p sums to 1, so every row sums to k (12 fp32 sums of 16 terms: 1e-4 is ample). Entries are
        // not bounded by 1 for tau < 1 (the formula itself, fp64 included, lets a layer be re-picked).
        for (var s = 0; s < samples; s++)
            Assert.Equal(keep, soft.AsSpan(s * layers, layers).ToArray().Select(v => (double)v).Sum(), 1e-4);
    }

    internal static (float[] Soft, float[] Grad) TorchReference(GumbelTopKSpec spec, float[] logits, float[] gradMask, ScalarType type = ScalarType.Float32)
    {
        int samples = spec.Samples, layers = spec.Layers;
        var noise = new float[samples * layers];
        for (var s = 0; s < samples; s++)
            for (var i = 0; i < layers; i++)
                noise[s * layers + i] = (float)GumbelNoise.Sample(spec.Seed, spec.Step, s, i);

        using var scope = NewDisposeScope();
        var alpha = tensor(logits, [layers], ScalarType.Float32).to(type).requires_grad_();
        var g = tensor(noise, [samples, layers], ScalarType.Float32).to(type);
        var scores = alpha.unsqueeze(0) + g;
        Tensor y;
        if (spec.Relaxation == GumbelRelaxation.SoftTopK)
        {
            y = zeros_like(scores);
            var shifted = scores;
            for (var t = 0; t < spec.Keep; t++)
            {
                var z = shifted / spec.Temperature;
                var p = nn.functional.softmax(z, 1);
                y = y + p;
                // 1 - p of the row's leading layer as (sum of the other exps) / (sum of all), as documented for
                // the sampler: the subtraction would round to 0 in fp32 once p > 1 - 2^-24. argmax returns the
                // first maximum, the sampler's tie rule.
                var e = exp(z - z.max(1, keepdim: true).values);
                var leading = nn.functional.one_hot(z.argmax(1), layers).to(ScalarType.Bool);
                var rest = e.masked_fill(leading, 0).sum(1, keepdim: true);
                var q = where(leading, rest / (rest + 1), 1 - p);
                shifted = shifted + log(clamp(q, min: GumbelTopKRowFloor));
            }
        }
        else if (spec.Keep < layers)
        {
            var top = scores.topk(spec.Keep + 1, 1).values;
            var threshold = (top[.., spec.Keep - 1] + top[.., spec.Keep]) / 2;
            y = sigmoid((scores - threshold.unsqueeze(1)) / spec.Temperature);
        }
        else
        {
            y = ones_like(scores) + 0 * scores; // every layer kept: constant 1, zero gradient
        }
        (y * tensor(gradMask, [samples, layers], ScalarType.Float32).to(type)).sum().backward();
        return (y.detach().to(ScalarType.Float32).data<float>().ToArray(), alpha.grad!.to(ScalarType.Float32).data<float>().ToArray());
    }

    // The same clamp the sampler documents (E3_GUMBEL_ONE_MINUS_P_FLOOR), restated independently.
    private const double GumbelTopKRowFloor = 1e-20;
}
