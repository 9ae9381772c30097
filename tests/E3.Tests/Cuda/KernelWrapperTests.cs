using System.Text.RegularExpressions;
using E3.Interop.Gpu;
using E3.Interop.Kernels;
using Xunit;

namespace E3.Tests.Cuda;

/// <summary>
/// Every typed wrapper's parameter block is checked against the kernel's C signature, parsed here straight
/// from the .cu source: the argument kinds, their C-ABI offsets and sizes, and the values themselves.
/// </summary>
public sealed partial class KernelWrapperTests
{
    private static readonly GpuStream Stream = new(0x5157);
    private static readonly DevicePointer<float> F1 = new(0x1000), F2 = new(0x2000), F3 = new(0x3000), F4 = new(0x4000), F5 = new(0x5000);
    private static readonly DevicePointer<Bf16> B1 = new(0x1100), B2 = new(0x2200), B3 = new(0x3300), B4 = new(0x4400);
    private static readonly DevicePointer<int> Ids = new(0x9000);

    [Fact]
    public void RmsNormWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using (var kernels = new RmsNormKernels(device))
        {
            kernels.Forward(F1, F2, F3, 5, 4096, 1e-6f, Stream);
            kernels.Forward(B1, B2, B3, 3, 896, 1e-5f, Stream);
            kernels.AddScaledForward(F1, F2, 0.5f, F3, F4, 7, 1024, 1e-6f, Stream);
            kernels.AddScaledForward(B1, B2, -0.25f, B3, B4, 2, 64, 1e-6f, Stream);
            kernels.Backward(F1, F2, F3, F4, F5, 9, 128, 1e-6f, Stream);
        }
        var l = device.Launches;
        Check(l[0], "e3_rmsnorm_f32", RowShape(5), F1.Address, F2.Address, F3.Address, 5, 4096, 1e-6f);
        Check(l[1], "e3_rmsnorm_bf16", RowShape(3), B1.Address, B2.Address, B3.Address, 3, 896, 1e-5f);
        Check(l[2], "e3_add_scaled_rmsnorm_f32", RowShape(7), F1.Address, F2.Address, 0.5f, F3.Address, F4.Address, 7, 1024, 1e-6f);
        Check(l[3], "e3_add_scaled_rmsnorm_bf16", RowShape(2), B1.Address, B2.Address, -0.25f, B3.Address, B4.Address, 2, 64, 1e-6f);
        Check(l[4], "e3_rmsnorm_backward_f32", RowShape(9), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 9, 128, 1e-6f);
        Assert.Equal(["rmsnorm"], device.LoadedModules);
        Assert.Equal(["rmsnorm"], device.UnloadedModules); // disposing the wrapper unloads its module
    }

    [Fact]
    public void SwiGluWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new SwiGluKernels(device);
        kernels.Forward(F1, F2, F1, 1000, Stream);
        kernels.Forward(B1, B2, B3, 5_000_000_000L, Stream);
        kernels.Backward(F1, F2, F3, F4, F5, 257, Stream);
        var l = device.Launches;
        Check(l[0], "e3_swiglu_f32", Shape(4, 256), F1.Address, F2.Address, F1.Address, 1000L);
        // Past 2^16 blocks the grid is capped and the kernel's grid-stride loop covers the rest.
        Check(l[1], "e3_swiglu_bf16", Shape(LaunchShapes.MaxGridStrideBlocks, 256), B1.Address, B2.Address, B3.Address, 5_000_000_000L);
        Check(l[2], "e3_swiglu_backward_f32", Shape(2, 256), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 257L);
    }

    [Fact]
    public void EmbeddingWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new EmbeddingKernels(device);
        kernels.Forward(F1, Ids, F2, 11, 2048, Stream);
        kernels.Forward(B1, Ids, B2, 12, 896, Stream);
        kernels.Backward(F3, Ids, F4, 13, 64, Stream);
        var l = device.Launches;
        Check(l[0], "e3_embedding_f32", RowShape(11), F1.Address, Ids.Address, F2.Address, 11, 2048);
        Check(l[1], "e3_embedding_bf16", RowShape(12), B1.Address, Ids.Address, B2.Address, 12, 896);
        Check(l[2], "e3_embedding_backward_f32", RowShape(13), F3.Address, Ids.Address, F4.Address, 13, 64);
    }

    [Fact]
    public void RopeWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new RopeKernels(device);
        var layout = new RopeLayout(Tokens: 6, Heads: 5, HeadDim: 128, Theta: 1_000_000f, TokensPerSequence: 3, StartPosition: 17);
        kernels.HeadNormRope(F1, F2, 1e-6f, layout, Stream);
        kernels.HeadNormRope(B1, default, 1e-6f, layout with { Heads = 2 }, Stream);
        kernels.RopeBackward(F3, F4, layout, Stream);
        var l = device.Launches;
        // 6 rows * 5 heads = 30 warps, 4 per block.
        Check(l[0], "e3_head_norm_rope_f32", Shape(8, 128), F1.Address, F2.Address, 6, 5, 128, 1e-6f, 1_000_000f, 3, 17);
        Check(l[1], "e3_head_norm_rope_bf16", Shape(3, 128), B1.Address, 0UL, 6, 2, 128, 1e-6f, 1_000_000f, 3, 17);
        Check(l[2], "e3_rope_backward_f32", Shape(8, 128), F3.Address, F4.Address, 6, 5, 128, 1_000_000f, 3, 17);
    }

    [Fact]
    public void EveryCatalogEntryPointHasAWrapper()
    {
        using var device = new RecordingGpuDevice();
        // Constructing each wrapper looks up all of its entry points once.
        using (new RmsNormKernels(device))
        using (new SwiGluKernels(device))
        using (new EmbeddingKernels(device))
        using (new RopeKernels(device))
        using (new EntropyKdKernels(device))
        {
        }
        var catalog = KernelCatalog.Embedded;
        Assert.Equal(catalog.Names.Order(), device.LoadedModules.Order());
        var all = catalog.Names.SelectMany(n => catalog.Get(n).EntryPoints).Order().ToArray();
        Assert.Equal(all, device.FunctionNames.Order());
    }

    [Fact]
    public void EmptyWorkLaunchesNothingAndBadShapesAreRejected()
    {
        using var device = new RecordingGpuDevice();
        using var rms = new RmsNormKernels(device);
        using var rope = new RopeKernels(device);
        rms.Forward(F1, F2, F3, rows: 0, cols: 64, 1e-6f, Stream);
        Assert.Empty(device.Launches);
        var cols = Assert.Throws<ArgumentOutOfRangeException>(() => rms.Forward(F1, F2, F3, 2, 0, 1e-6f, Stream));
        Assert.Equal("cols", cols.ParamName);
        var headDim = Assert.Throws<ArgumentOutOfRangeException>(() => rope.HeadNormRope(F1, F2, 1e-6f, new RopeLayout(1, 1, 63, 1e4f, 1, 0), Stream));
        Assert.Equal("HeadDim", headDim.ParamName);
    }

    private static LaunchShape RowShape(int rows) => Shape(rows, 256);

    private static LaunchShape Shape(int grid, int block) => new(new Dim3((uint)grid), new Dim3((uint)block));

    private static void Check(RecordedLaunch launch, string entryPoint, LaunchShape shape, params object[] values)
    {
        Assert.Equal(entryPoint, launch.EntryPoint);
        Assert.Equal(shape, launch.Shape);
        Assert.Equal(Stream, launch.Stream);
        var parameters = Signature(entryPoint);
        Assert.Equal(parameters.Length, launch.Kinds.Length);
        int end = 0;
        for (int i = 0; i < parameters.Length; i++)
        {
            var (kind, size) = parameters[i];
            int offset = (end + size - 1) / size * size; // C ABI: each parameter at its natural alignment
            Assert.Equal(kind, launch.Kinds[i]);
            Assert.Equal(size, launch.Sizes[i]);
            Assert.Equal(offset, launch.Offsets[i]);
            end = offset + size;
            // Each arm boxed on its own: a switch over mixed numeric types would otherwise convert all to float.
            object actual = kind switch
            {
                KernelArgKind.Pointer => (object)launch.Read<ulong>(i),
                KernelArgKind.Int32 => (object)launch.Read<int>(i),
                KernelArgKind.UInt32 => (object)launch.Read<uint>(i),
                KernelArgKind.Float32 => (object)launch.Read<float>(i),
                _ => (object)launch.Read<long>(i),
            };
            Assert.Equal(values[i], actual);
        }
        Assert.Equal(end, launch.Bytes.Length);
    }

    // Parameter kinds and sizes of an entry point, from its extern "C" declaration in kernels/*.cu.
    private static (KernelArgKind Kind, int Size)[] Signature(string entryPoint)
    {
        var catalog = KernelCatalog.Embedded;
        foreach (var name in catalog.Names)
        {
            var match = Regex.Match(catalog.Get(name).Text, $@"extern ""C"" __global__ void {entryPoint}\(([^)]*)\)");
            if (!match.Success)
                continue;
            return match.Groups[1].Value.Split(',').Select(p =>
            {
                var type = TrailingIdentifier().Replace(p.Trim(), "").Replace("const ", "").Trim();
                return type switch
                {
                    _ when type.EndsWith('*') => (KernelArgKind.Pointer, 8),
                    "int" => (KernelArgKind.Int32, 4),
                    "unsigned int" => (KernelArgKind.UInt32, 4),
                    "float" => (KernelArgKind.Float32, 4),
                    "long long" => (KernelArgKind.Int64, 8),
                    _ => throw new InvalidOperationException($"{entryPoint}: parameter type '{type}' is outside the kernel conventions"),
                };
            }).ToArray();
        }
        throw new InvalidOperationException($"no kernel declares {entryPoint}");
    }

    [GeneratedRegex(@"\s*\b\w+$")]
    private static partial Regex TrailingIdentifier();
}
