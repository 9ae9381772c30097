using E3.Backends.Numerics;
using E3.Interop.Emulator;
using E3.Interop.Kernels;
using E3.Pruning.Masking;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.Masking;

/// <summary>
/// kernels/gumbel_topk.cu on the CPU emulator against <see cref="CpuGumbelTopK"/>. Bit-identical: the fp64 noise
/// (both call glibc's log) and therefore the hard masks. Within bounds: soft masks and gradients, whose fp32
/// sums run in a different order (block tree vs 8-lane vectors) with different exp/log (glibc vs .NET's
/// vectorised ones) — the same few-ulp-per-step effects as against TorchSharp, so the same 1e-5 relative bound.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EmuGumbelTopKTests(EmuFixture fixture)
{
    private const ulong Seed = 0xfeedfacecafebeefUL;
    private readonly EmuDevice device = fixture.Device;

    [Fact]
    public void NoiseIsBitIdenticalToTheCpu()
    {
        const int layers = 77, samples = 50;
        const long step = (3L << 32) + 17; // both counter words of the step in use
        using var bits = device.Allocate(samples * layers * 2 * sizeof(uint));
        device.Launch(device.GetFunction("gumbel_topk", "e3_gumbel_noise_bits"), samples, BlockFor(layers), 0, null,
            bits, layers, samples, unchecked((long)Seed), step);
        var words = bits.Download<uint>(samples * layers * 2);
        for (var s = 0; s < samples; s++)
            for (var i = 0; i < layers; i++)
            {
                var expected = BitConverter.DoubleToUInt64Bits(GumbelNoise.Sample(Seed, step, s, i));
                var index = 2 * (s * layers + i);
                Assert.Equal(expected, ((ulong)words[index] << 32) | words[index + 1]);
            }
    }

    [Fact]
    public void HardMasksAreBitIdenticalForEveryKeptCount()
    {
        var cpu = new CpuGumbelTopK();
        var random = new Random(8);
        foreach (var layers in new[] { 1, 2, 31, 32, 33, 64, 100, 256 })
        {
            var logits = Enumerable.Range(0, layers).Select(_ => (float)(random.NextDouble() * 3 - 1.5)).ToArray();
            for (var keep = 1; keep <= layers; keep++)
            {
                // The sigmoid relaxation keeps the sweep cheap; the soft-top-k path shares the ranking code.
                var spec = new GumbelTopKSpec(layers, keep, 3, 1f, Seed, keep, GumbelRelaxation.Sigmoid);
                var (hard, _) = EmuForward(logits, spec);
                var expected = new float[spec.MaskElements];
                cpu.SampleHard(logits, spec, expected);
                Assert.True(expected.AsSpan().SequenceEqual(hard), $"L={layers} k={keep}");
            }
        }
    }

    [Theory]
    [InlineData(GumbelRelaxation.SoftTopK, 64, 48, 0.7f)]
    [InlineData(GumbelRelaxation.SoftTopK, 8, 3, 1f)]
    [InlineData(GumbelRelaxation.SoftTopK, 200, 150, 2f)]
    [InlineData(GumbelRelaxation.Sigmoid, 64, 48, 0.7f)]
    [InlineData(GumbelRelaxation.Sigmoid, 33, 33, 0.5f)]
    public void SoftMasksAndGradientsMatchTheCpuSampler(GumbelRelaxation relaxation, int layers, int keep, float tau)
    {
        const int samples = 40;
        var spec = new GumbelTopKSpec(layers, keep, samples, tau, Seed, 9, relaxation);
        var random = new Random(layers + keep);
        var logits = Enumerable.Range(0, layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var gradMask = Enumerable.Range(0, samples * layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] hard = new float[spec.MaskElements], soft = new float[spec.MaskElements], grad = new float[layers];
        new CpuGumbelTopK().ForwardBackward(logits, spec, gradMask, hard, soft, grad);

        // Separate forward and backward launches, then the fused launch.
        var (emuHard, emuSoft, emuGrad) = EmuRun(logits, gradMask, spec, fused: false);
        var (fusedHard, fusedSoft, fusedGrad) = EmuRun(logits, gradMask, spec, fused: true);

        Assert.Equal(hard, emuHard);
        Assert.Equal(hard, fusedHard);
        Assert.Equal(emuSoft, fusedSoft); // the same device code computes both
        MaskAssert.Close(soft, emuSoft, 1e-5, "soft");
        MaskAssert.Close(grad, emuGrad, 1e-5, "grad");
        // The fused kernel's atomicAdds may land in another order than the backward kernel's: fp32 rounding of
        // a 40-term sum, 40 * 2^-24 of the largest magnitude at most.
        MaskAssert.Close(emuGrad, fusedGrad, 40 * Math.ScaleB(1, -24), "fused grad");
    }

    private (float[] Hard, float[] Soft) EmuForward(float[] logits, GumbelTopKSpec spec)
    {
        using var alpha = device.Upload<float>(logits);
        using var hard = device.Allocate(spec.MaskElements * sizeof(float));
        using var soft = device.Allocate(spec.MaskElements * sizeof(float));
        using var work = device.Allocate(Math.Max(4, GumbelTopKKernels.WorkspaceElements(spec.Samples, spec.Layers, spec.Keep) * sizeof(float)));
        device.Launch(device.GetFunction("gumbel_topk", "e3_gumbel_topk_forward"), (uint)spec.Samples, BlockFor(spec.Layers), 0, null,
            alpha, hard, soft, work, spec.Layers, spec.Keep, spec.Samples, unchecked((long)spec.Seed), spec.Step, spec.Temperature, (int)spec.Relaxation);
        return (hard.Download<float>((int)spec.MaskElements), soft.Download<float>((int)spec.MaskElements));
    }

    private (float[] Hard, float[] Soft, float[] Grad) EmuRun(float[] logits, float[] gradMask, GumbelTopKSpec spec, bool fused)
    {
        var n = (int)spec.MaskElements;
        using var alpha = device.Upload<float>(logits);
        using var dm = device.Upload<float>(gradMask);
        using var hard = device.Allocate(n * sizeof(float));
        using var soft = device.Allocate(n * sizeof(float));
        using var work = device.Allocate(GumbelTopKKernels.WorkspaceElements(spec.Samples, spec.Layers, spec.Keep) * sizeof(float));
        using var grad = device.Upload<float>(new float[spec.Layers]);
        KernelArg seed = unchecked((long)spec.Seed), step = spec.Step, tau = spec.Temperature, relaxation = (int)spec.Relaxation;
        uint grid = (uint)spec.Samples;
        var block = BlockFor(spec.Layers);
        if (fused)
        {
            device.Launch(device.GetFunction("gumbel_topk", "e3_gumbel_topk_forward_backward"), grid, block, 0, null,
                alpha, dm, hard, soft, work, grad, spec.Layers, spec.Keep, spec.Samples, seed, step, tau, relaxation);
        }
        else
        {
            device.Launch(device.GetFunction("gumbel_topk", "e3_gumbel_topk_forward"), grid, block, 0, null,
                alpha, hard, soft, work, spec.Layers, spec.Keep, spec.Samples, seed, step, tau, relaxation);
            device.Launch(device.GetFunction("gumbel_topk", "e3_gumbel_topk_backward"), grid, block, 0, null,
                alpha, dm, work, grad, spec.Layers, spec.Keep, spec.Samples, seed, step, tau, relaxation);
        }
        return (hard.Download<float>(n), soft.Download<float>(n), grad.Download<float>(spec.Layers));
    }

    private static Dim3 BlockFor(int layers) => GumbelTopKKernels.Shape(1, layers).Block.X;
}
