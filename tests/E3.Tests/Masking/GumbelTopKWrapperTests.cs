using E3.Interop.Gpu;
using E3.Interop.Kernels;
using Xunit;

namespace E3.Tests.Cuda;

// Joins the partial KernelWrapperTests to reuse its signature parser (Check): the gumbel_topk.cu wrappers'
// parameter blocks against the kernels' C declarations.
public sealed partial class KernelWrapperTests
{
    [Fact]
    public void GumbelTopKWrappersMatchTheirSignatures()
    {
        var bits = new DevicePointer<uint>(0x7000);
        const ulong seed = 0xfedcba9876543210UL;
        const long seedBits = unchecked((long)seed);
        using var device = new RecordingGpuDevice();
        using (var kernels = new GumbelTopKKernels(device))
        {
            kernels.Forward(F1, F2, F3, F4, 64, 48, 4096, seed, 7, 0.5f, GumbelRelaxation.SoftTopK, Stream);
            kernels.Backward(F1, F2, F3, F4, 33, 5, 10, seed, -1, 2f, GumbelRelaxation.Sigmoid, Stream);
            kernels.ForwardBackward(F1, F2, F3, F4, F5, F1, 256, 256, 3, seed, 1L << 40, 1f, GumbelRelaxation.SoftTopK, Stream);
            kernels.NoiseBits(bits, 1, 9, seed, 3, Stream);
        }
        var l = device.Launches;
        // One block per sample of 32 * ceil(L / 32) threads.
        Check(l[0], "e3_gumbel_topk_forward", Shape(4096, 64), F1.Address, F2.Address, F3.Address, F4.Address, 64, 48, 4096, seedBits, 7L, 0.5f, 0);
        Check(l[1], "e3_gumbel_topk_backward", Shape(10, 64), F1.Address, F2.Address, F3.Address, F4.Address, 33, 5, 10, seedBits, -1L, 2f, 1);
        Check(l[2], "e3_gumbel_topk_forward_backward", Shape(3, 256), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, F1.Address,
            256, 256, 3, seedBits, 1L << 40, 1f, 0);
        Check(l[3], "e3_gumbel_noise_bits", Shape(9, 32), bits.Address, 1, 9, seedBits, 3L);
        Assert.Equal(["gumbel_topk"], device.UnloadedModules);
        Assert.Equal(2L * 4096 * 48 * 64, GumbelTopKKernels.WorkspaceElements(4096, 64, 48));
    }

    [Fact]
    public void GumbelTopKWrapperRejectsBadShapesBeforeLaunching()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new GumbelTopKKernels(device);
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Forward(F1, F2, F3, F4, 257, 1, 1, 0, 0, 1f, GumbelRelaxation.SoftTopK, Stream));
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Forward(F1, F2, F3, F4, 8, 9, 1, 0, 0, 1f, GumbelRelaxation.SoftTopK, Stream));
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Forward(F1, F2, F3, F4, 8, 0, 1, 0, 0, 1f, GumbelRelaxation.SoftTopK, Stream));
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Backward(F1, F2, F3, F4, 8, 2, 1, 0, 0, 0f, GumbelRelaxation.SoftTopK, Stream));
        Assert.Empty(device.Launches);
    }
}
