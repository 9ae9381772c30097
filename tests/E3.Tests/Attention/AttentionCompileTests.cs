using E3.Interop.Kernels;
using E3.Tests.Cuda;
using Xunit;
using Xunit.Abstractions;

namespace E3.Tests.Attention;

/// <summary>
/// What ptxas reports for attention.cu beyond the catalog-wide no-spill check: the per-row state arrays
/// (running max, sum and the 4 x up-to-8 output accumulators per lane) must be fully unrolled into registers.
/// If an index stopped being a compile-time constant they would move to a local-memory stack frame, which
/// ptxas does not count as a spill.
/// </summary>
public sealed class AttentionCompileTests(ITestOutputHelper output)
{
    [Fact]
    public void EveryAttentionKernelKeepsItsStateInRegisters()
    {
        NvrtcRequirement.Ensure();
        // sm_90 only: the catalog test already compiles this file for sm_80 and sm_90 (about 20 s each).
        var module = new KernelCompiler(KernelCatalog.Embedded, cache: null).Compile("attention", new KernelTarget(90, KernelImageKind.Cubin));
        Assert.Equal(13, module.Resources.Count); // inference (8 + the tensor-core prefill) and training (4) entry points
        Assert.All(module.Resources, r =>
        {
            output.WriteLine($"{r.Kernel}: {r.Registers} registers, {r.StackFrameBytes} bytes stack");
            Assert.Equal(0, r.StackFrameBytes);
            Assert.Equal(0, r.SharedBytes); // all shared memory is dynamic, sized by LaunchShapes.AttentionSharedBytes
            // 128-thread blocks: staying under 128 registers lets 4 blocks share an SM's 64K registers. The tensor-core
            // prefill holds a warp's 16 x 128 output tile and its Q fragments in registers (64 + 32 a lane) and runs
            // 64-row blocks, so fewer of them need to share an SM; it must still fit without spilling.
            Assert.InRange(r.Registers, 1, r.Kernel == "e3_attention_prefill_mma_bf16" ? 255 : 128);
        });
    }
}
