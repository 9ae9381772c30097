using System.Collections.Concurrent;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using E3.Interop.Nvrtc;

namespace E3.Interop.Emulator;

/// <summary>
/// What one GPU architecture accepts for a launch: the per-block register file, the thread limit and shared memory.
/// The emulator has no registers, so a block size that a kernel's register count makes too large for a real GPU (the
/// driver's CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES) would pass there unseen; these limits, with ptxas's figures for the
/// kernel, let it refuse that launch as the GPU would.
/// </summary>
/// <param name="SmVersion">e.g. 90.</param>
/// <param name="MaxSharedBytesOptIn">Most shared memory (static plus dynamic) a block may opt into.</param>
internal sealed record GpuLaunchLimits(int SmVersion, int MaxSharedBytesOptIn)
{
    /// <summary>Registers one block may hold (64 K on every architecture since sm_50).</summary>
    public const int RegistersPerBlock = 64 * 1024;

    /// <summary>Registers are allocated to a warp in units of this many (sm_50 onwards).</summary>
    public const int RegisterAllocationUnit = 256;

    /// <summary>CUDA's thread limit per block.</summary>
    public const int MaxThreadsPerBlock = 1024;

    /// <summary>Shared memory a block gets without opting in.</summary>
    public const int DefaultSharedBytes = 48 * 1024;

    /// <summary>A100-class GPUs: 163 KB of shared memory per block.</summary>
    public static GpuLaunchLimits Sm80 { get; } = new(80, 163 * 1024);

    /// <summary>H100/H200: 227 KB of shared memory per block.</summary>
    public static GpuLaunchLimits Sm90 { get; } = new(90, 227 * 1024);

    /// <summary>The architectures the kernels are built for (<see cref="Sm80"/>, <see cref="Sm90"/>).</summary>
    public static IReadOnlyList<GpuLaunchLimits> Supported { get; } = [Sm80, Sm90];

    /// <summary>e.g. <c>sm_90</c>.</summary>
    public string Arch => $"sm_{SmVersion}";

    /// <summary>The register file's sub-partitions (one per warp scheduler) on sm_70 and later.</summary>
    public const int SubPartitions = 4;

    /// <summary>
    /// The registers the hardware counts for a block of <paramref name="threads"/> at <paramref name="registersPerThread"/>:
    /// each warp's registers rounded up to the allocation unit, times the warps rounded up to a whole number per
    /// sub-partition, as the launch check assumes every partition is allocated at once (CUDA's occupancy calculator,
    /// cuda_occupancy.h, models the hardware check this way). 25 warps of 80 registers count as 28 warps: 71,680.
    /// </summary>
    public static long RegistersForBlock(int registersPerThread, int threads)
    {
        long perWarp = (registersPerThread * 32L + RegisterAllocationUnit - 1) / RegisterAllocationUnit * RegisterAllocationUnit;
        long warps = (threads + 31) / 32;
        return perWarp * ((warps + SubPartitions - 1) / SubPartitions * SubPartitions);
    }

    /// <summary>
    /// Why a launch of <paramref name="kernel"/> with <paramref name="threads"/> threads, <paramref name="dynamicSharedBytes"/>
    /// of dynamic shared memory and the opted-in limit <paramref name="maxDynamicSharedBytes"/> (null: none set) would
    /// fail on this architecture, or null when it would not.
    /// </summary>
    public string? Refusal(KernelResources kernel, int threads, int dynamicSharedBytes, int? maxDynamicSharedBytes)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (threads > MaxThreadsPerBlock)
            return $"on {Arch}, {threads} threads exceed the {MaxThreadsPerBlock} a block may have";
        long registers = RegistersForBlock(kernel.Registers, threads);
        if (registers > RegistersPerBlock)
            return $"on {Arch}, {kernel.Kernel} uses {kernel.Registers} registers a thread, so {threads} threads need {registers} registers of the {RegistersPerBlock} a block may hold";
        if (maxDynamicSharedBytes is int optedIn && kernel.SharedBytes + optedIn > MaxSharedBytesOptIn)
            return $"on {Arch}, {kernel.Kernel}'s {kernel.SharedBytes} bytes of static shared memory plus the {optedIn} of dynamic it opted into exceed the {MaxSharedBytesOptIn} a block may have";
        int allowed = maxDynamicSharedBytes ?? DefaultSharedBytes - kernel.SharedBytes;
        if (dynamicSharedBytes > allowed)
            return $"on {Arch}, {kernel.Kernel}'s {dynamicSharedBytes} bytes of dynamic shared memory exceed the {allowed} it may use" +
                (maxDynamicSharedBytes is null ? $" without opting in ({kernel.SharedBytes} bytes are static)" : "");
        return null;
    }
}

/// <summary>
/// Checks the emulator's launches of catalog kernels against <see cref="GpuLaunchLimits"/>, with the register and
/// static shared memory counts ptxas reports when NVRTC compiles each kernel file for each target (through the
/// on-disk kernel cache: once per machine and kernel version, about 30 s for every file and both targets).
/// </summary>
internal sealed class LaunchLimitCheck
{
    /// <summary>The environment variable that picks the targets: a comma-separated list (<c>sm_80,sm_90</c>) or <c>none</c>.</summary>
    public const string TargetsVariable = "E3_EMU_TARGETS";

    // Per process, as the compiled files do not change while it runs.
    static readonly ConcurrentDictionary<(KernelCatalog Catalog, string File, int Sm), Lazy<IReadOnlyDictionary<string, KernelResources>>> Reports = new();

    readonly KernelCompiler _compiler;

    /// <summary>Checks against <paramref name="targets"/>, compiling from <paramref name="catalog"/> (the embedded one by default).</summary>
    public LaunchLimitCheck(IReadOnlyList<GpuLaunchLimits> targets, KernelCatalog? catalog = null)
    {
        ArgumentNullException.ThrowIfNull(targets);
        Targets = targets;
        _compiler = new KernelCompiler(catalog ?? KernelCatalog.Embedded, new KernelCache(KernelCache.DefaultDirectory()));
    }

    /// <summary>The architectures every launch must fit.</summary>
    public IReadOnlyList<GpuLaunchLimits> Targets { get; }

    /// <summary>
    /// The check <see cref="TargetsVariable"/> asks for. Unset, it is every supported architecture when NVRTC is
    /// there to report the kernels' registers, and none otherwise; <c>none</c> turns it off.
    /// </summary>
    /// <exception cref="ArgumentException">The variable names an unknown architecture, or names one while NVRTC is missing.</exception>
    public static LaunchLimitCheck? FromEnvironment()
    {
        var value = Environment.GetEnvironmentVariable(TargetsVariable);
        bool nvrtc = NvrtcCompiler.IsAvailable(out var missing);
        if (string.IsNullOrWhiteSpace(value))
            return nvrtc ? new LaunchLimitCheck(GpuLaunchLimits.Supported) : null;
        if (value.Trim().Equals("none", StringComparison.OrdinalIgnoreCase))
            return null;
        var targets = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(arch => GpuLaunchLimits.Supported.FirstOrDefault(t => t.Arch.Equals(arch, StringComparison.OrdinalIgnoreCase))
                ?? throw new ArgumentException($"{TargetsVariable}={value}: unknown architecture '{arch}' (known: {string.Join(", ", GpuLaunchLimits.Supported.Select(t => t.Arch))}, or none)"))
            .ToArray();
        if (!nvrtc)
            throw new ArgumentException($"{TargetsVariable}={value}: checking launches needs NVRTC for the kernels' register counts: {missing}");
        return new LaunchLimitCheck(targets);
    }

    /// <summary>Whether <paramref name="file"/> is a catalog kernel file (test kernels are not checked).</summary>
    public bool Covers(string file) => _compiler.Catalog.Names.Contains(file);

    /// <summary>
    /// The first target on which the launch would fail, with the reason, or null. Kernels outside the catalog are not
    /// checked.
    /// </summary>
    public string? Refusal(string file, string kernel, int threads, int dynamicSharedBytes, int? maxDynamicSharedBytes)
    {
        if (!Covers(file))
            return null;
        foreach (var target in Targets)
        {
            if (!Report(file, target.SmVersion).TryGetValue(kernel, out var resources))
                return $"ptxas reported nothing for {kernel} in {file}.cu on {target.Arch}";
            if (target.Refusal(resources, threads, dynamicSharedBytes, maxDynamicSharedBytes) is { } why)
                return why;
        }
        return null;
    }

    IReadOnlyDictionary<string, KernelResources> Report(string file, int sm) =>
        Reports.GetOrAdd((_compiler.Catalog, file, sm), key => new Lazy<IReadOnlyDictionary<string, KernelResources>>(() =>
            _compiler.Compile(key.File, new KernelTarget(key.Sm, KernelImageKind.Cubin)).Resources.ToDictionary(r => r.Kernel),
            // A failed compile is not cached: the next launch of the file tries again.
            LazyThreadSafetyMode.PublicationOnly)).Value;
}
