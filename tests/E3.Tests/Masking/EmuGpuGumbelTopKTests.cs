using E3.Backends.Numerics;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Pruning.Masking;
using E3.Tests.Emulator;
using E3.Tests.GpuBackend;
using Xunit;

namespace E3.Tests.Masking;

/// <summary>
/// The typed <see cref="GumbelTopKKernels"/> behind <see cref="IGpuDevice"/> on the emulator (EmuGpuDevice): the
/// same path a GPU takes. Hard masks and noise bit-identical to the CPU sampler; soft masks and gradients within
/// the 1e-5 relative bound argued in <see cref="EmuGumbelTopKTests"/>.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class EmuGpuGumbelTopKTests(EmuFixture fixture) : IDisposable
{
    private readonly EmuDeviceScope emu = new();
    private readonly List<DeviceBuffer> buffers = [];

    [Theory]
    [InlineData(GumbelRelaxation.SoftTopK)]
    [InlineData(GumbelRelaxation.Sigmoid)]
    public void WrapperLaunchesMatchTheCpuSampler(GumbelRelaxation relaxation)
    {
        _ = fixture.Device;
        const int samples = 24, layers = 40, keep = 29;
        const ulong seed = 31337;
        var spec = new GumbelTopKSpec(layers, keep, samples, 0.8f, seed, 12, relaxation);
        var random = new Random(17);
        var logits = Enumerable.Range(0, layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var gradMask = Enumerable.Range(0, samples * layers).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        float[] hard = new float[spec.MaskElements], soft = new float[spec.MaskElements], grad = new float[layers];
        new CpuGumbelTopK().ForwardBackward(logits, spec, gradMask, hard, soft, grad);

        var stream = emu.Stream.Handle;
        var n = (int)spec.MaskElements;
        var dLogits = emu.Upload<float>(buffers, logits);
        var dGradMask = emu.Upload<float>(buffers, gradMask);
        var dHard = emu.Upload<float>(buffers, new float[n]);
        var dSoft = emu.Upload<float>(buffers, new float[n]);
        var dWork = emu.Upload<float>(buffers, new float[GumbelTopKKernels.WorkspaceElements(samples, layers, keep)]);
        var dGrad = emu.Upload<float>(buffers, new float[layers]);
        var dBits = emu.Upload<uint>(buffers, new uint[2 * n]);
        using var kernels = new GumbelTopKKernels(emu.Device);
        kernels.Forward(dLogits, dHard, dSoft, dWork, layers, keep, samples, seed, 12, 0.8f, relaxation, stream);
        kernels.Backward(dLogits, dGradMask, dWork, dGrad, layers, keep, samples, seed, 12, 0.8f, relaxation, stream);
        kernels.NoiseBits(dBits, layers, samples, seed, 12, stream);

        Assert.Equal(hard, emu.Download(dHard, n));
        var bits = emu.Download(dBits, 2 * n);
        for (var s = 0; s < samples; s++)
            for (var i = 0; i < layers; i++)
            {
                var at = 2 * (s * layers + i);
                Assert.Equal(BitConverter.DoubleToUInt64Bits(GumbelNoise.Sample(seed, 12, s, i)), ((ulong)bits[at] << 32) | bits[at + 1]);
            }
        MaskAssert.Close(soft, emu.Download(dSoft, n), 1e-5, "soft");
        MaskAssert.Close(grad, emu.Download(dGrad, layers), 1e-5, "grad");
    }

    public void Dispose()
    {
        foreach (var buffer in buffers)
            buffer.Dispose();
        emu.Dispose();
    }
}
