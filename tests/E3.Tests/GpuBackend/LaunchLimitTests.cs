using E3.Interop.Emulator;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Tests.Cuda;
using E3.Tests.Emulator;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// The emulator refuses a launch that a real sm_80 or sm_90 GPU would refuse for its registers, threads or shared
/// memory, with ptxas's own register counts for the kernel, so that a block size too large for a kernel's registers
/// fails in CI rather than as CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES on the first GPU run. Every emulator test runs with
/// this check on.
/// </summary>
[Collection(EmuCollection.Name)]
public sealed class LaunchLimitTests(EmuFixture fixture) : IDisposable
{
    readonly EmuDeviceScope _emu = EmuDeviceScope.After(fixture);

    EmuGpuDevice Device => (EmuGpuDevice)_emu.Device;

    static KernelResources Kernel(int registers, int staticShared = 0) => new("k", "sm_90", registers, staticShared, 0, 0, 0, 0);

    [Theory]
    [InlineData(168, 384, 12 * 5376)]   // 168 x 32 = 5376 a warp, already a multiple of 256
    [InlineData(168, 416, 16 * 5376)]   // 13 warps count as 16: a whole number per sub-partition
    [InlineData(255, 256, 8 * 8192)]    // 255 x 32 = 8160, rounded up to 8192 a warp
    [InlineData(30, 100, 4 * 1024)]     // 960 a warp rounded to 1024; 100 threads are 4 warps
    [InlineData(80, 800, 28 * 2560)]    // 25 warps count as 28: 71,680, more than a block may hold
    [InlineData(16, 32, 4 * 512)]       // one warp still counts once per sub-partition
    public void RegistersAreAllocatedByWholeWarpsInUnitsOf256AndWholeSubPartitions(int registers, int threads, long expected) =>
        Assert.Equal(expected, GpuLaunchLimits.RegistersForBlock(registers, threads));

    [Fact]
    public void ALaunchFitsOnlyWithinTheRegisterFileThreadsAndSharedMemory()
    {
        var sm90 = GpuLaunchLimits.Sm90;
        Assert.Null(sm90.Refusal(Kernel(168), 384, 0, null));                    // 64,512 registers
        Assert.Contains("416 threads need 86016 registers of the 65536", sm90.Refusal(Kernel(168), 416, 0, null));
        Assert.Null(sm90.Refusal(Kernel(80), 768, 0, null));                     // 24 warps: 61,440
        Assert.Contains("800 threads need 71680", sm90.Refusal(Kernel(80), 800, 0, null)); // 25 warps, counted as 28
        Assert.Null(sm90.Refusal(Kernel(255), 256, 0, null));                    // exactly 65,536
        Assert.NotNull(sm90.Refusal(Kernel(255), 288, 0, null));
        Assert.Contains("1056 threads exceed the 1024", sm90.Refusal(Kernel(16), 1056, 0, null));

        // Without opting in, static and dynamic shared memory share 48 KB.
        Assert.Null(sm90.Refusal(Kernel(32, staticShared: 4096), 256, 48 * 1024 - 4096, null));
        Assert.Contains("without opting in", sm90.Refusal(Kernel(32, staticShared: 4096), 256, 48 * 1024 - 4095, null));
        // Opted in: up to 227 KB on sm_90 but 163 KB on sm_80, static included.
        Assert.Null(sm90.Refusal(Kernel(32, staticShared: 1024), 256, 200 * 1024, 200 * 1024));
        Assert.Contains("exceed the 166912", GpuLaunchLimits.Sm80.Refusal(Kernel(32, staticShared: 1024), 256, 200 * 1024, 200 * 1024));
        Assert.Contains("exceed the 232448", sm90.Refusal(Kernel(32, staticShared: 1024), 256, 0, 227 * 1024));
    }

    [Fact]
    public void TheEmulatorChecksEveryTargetByDefaultWhereNvrtcIs()
    {
        NvrtcRequirement.Ensure();
        var limits = Device.LaunchLimits;
        Assert.NotNull(limits);
        Assert.Equal(["sm_80", "sm_90"], limits.Targets.Select(t => t.Arch));
        Assert.True(limits.Covers("attention"));
        Assert.False(limits.Covers("faults")); // the emulator's own test kernels are not built for GPUs
    }

    [Fact]
    public void AKernelLaunchedWithMoreThreadsThanItsRegistersAllowIsRefusedAsTheDriverWould()
    {
        NvrtcRequirement.Ensure();
        using var module = Device.LoadOwnedModule("attention");
        var function = module.GetFunction("e3_attention_backward_dkdv_f32");
        var report = new KernelCompiler(KernelCatalog.Embedded, new KernelCache(KernelCache.DefaultDirectory()))
            .Compile("attention", new KernelTarget(80, KernelImageKind.Cubin)).Resources.Single(r => r.Kernel == "e3_attention_backward_dkdv_f32");
        Assert.True(report.Registers > 64, $"the test needs a kernel of over 64 registers, not {report.Registers}");

        var shape = new LaunchShape(new E3.Interop.Gpu.Dim3(1), new E3.Interop.Gpu.Dim3(1024));
        var error = Assert.Throws<EmuException>(() =>
        {
            var args = new KernelArgs();
            for (int i = 0; i < 8; i++) args.Add(DevicePtr.Null);
            for (int i = 0; i < 4; i++) args.Add(0);
            args.Add(1f);
            Device.Launch(function, shape, _emu.Stream.Handle, args);
        });
        Assert.Equal(EmuResult.LaunchOutOfResources, error.Result);
        Assert.Equal("CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", error.ErrorName);
        Assert.Contains($"on sm_80, e3_attention_backward_dkdv_f32 uses {report.Registers} registers a thread, so 1024 threads need", error.Message);
        Assert.Equal(0, Device.PendingOperations); // refused at the call, never queued

        // The engine's own block of 128 threads fits both targets.
        Assert.Null(Device.LaunchLimits!.Refusal("attention", "e3_attention_backward_dkdv_f32", LaunchShapes.AttentionThreads, 0, null));
    }

    [Fact]
    public void OptingIntoMoreSharedMemoryThanATargetHasIsRefused()
    {
        NvrtcRequirement.Ensure();
        using var module = Device.LoadOwnedModule("attention");
        var function = module.GetFunction("e3_attention_prefill_mma_bf16");
        var error = Assert.Throws<EmuException>(() => Device.SetMaxDynamicSharedBytes(function, 200 * 1024));
        Assert.Equal(EmuResult.InvalidValue, error.Result);
        Assert.Contains("on sm_80", error.Message);
        Assert.Contains("166912", error.Message);

        Device.LaunchLimits = new LaunchLimitCheck([GpuLaunchLimits.Sm90]);
        Device.SetMaxDynamicSharedBytes(function, 200 * 1024);
        Assert.Equal(200 * 1024, Device.GetAttributes(function).MaxDynamicSharedBytes);
    }

    public void Dispose() => _emu.Dispose();
}
