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
            kernels.GatedResidualForward(F1, F2, F3, 0.5f, F4, F5, 7, 1024, 1e-6f, Stream);
            kernels.GatedResidualForward(B1, B2, B3, -0.25f, B4, B1, 2, 64, 1e-6f, Stream);
            kernels.Backward(F1, F2, F3, F4, F5, 9, 128, 1e-6f, Stream);
            kernels.AddForward(F1, F2, F3, F4, F5, 4, 96, 1e-5f, Stream);
            kernels.AddForward(B1, B2, B1, B3, B4, 6, 64, 1e-6f, Stream);
        }
        var l = device.Launches;
        Check(l[0], "e3_rmsnorm_f32", RowShape(5), F1.Address, F2.Address, F3.Address, 5, 4096, 1e-6f);
        Check(l[1], "e3_rmsnorm_bf16", RowShape(3), B1.Address, B2.Address, B3.Address, 3, 896, 1e-5f);
        Check(l[2], "e3_gated_residual_rmsnorm_f32", RowShape(7), F1.Address, F2.Address, F3.Address, 0.5f, F4.Address, F5.Address, 7, 1024, 1e-6f);
        Check(l[3], "e3_gated_residual_rmsnorm_bf16", RowShape(2), B1.Address, B2.Address, B3.Address, -0.25f, B4.Address, B1.Address, 2, 64, 1e-6f);
        Check(l[4], "e3_rmsnorm_backward_f32", RowShape(9), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 9, 128, 1e-6f);
        Check(l[5], "e3_add_rmsnorm_f32", RowShape(4), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 4, 96, 1e-5f);
        Check(l[6], "e3_add_rmsnorm_bf16", RowShape(6), B1.Address, B2.Address, B1.Address, B3.Address, B4.Address, 6, 64, 1e-6f);
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
        kernels.Forward(B1, B2, B3, 100_000, Stream);
        var l = device.Launches;
        Check(l[0], "e3_swiglu_f32", Shape(4, 256), F1.Address, F2.Address, F1.Address, 1000L);
        // Past 2^16 blocks the grid is capped and the kernel's grid-stride loop covers the rest.
        Check(l[1], "e3_swiglu_bf16", Shape(LaunchShapes.MaxGridStrideBlocks, 256), B1.Address, B2.Address, B3.Address, 5_000_000_000L);
        Check(l[2], "e3_swiglu_backward_f32", Shape(2, 256), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 257L);
        // bf16 takes 8 elements a thread: ceil(100,000 / 2048) = 49 blocks, where fp32 would take 391.
        Check(l[3], "e3_swiglu_bf16", Shape(49, 256), B1.Address, B2.Address, B3.Address, 100_000L);
    }

    [Fact]
    public void ResidualAndRowWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using var residual = new ResidualKernels(device);
        using var rows = new RowKernels(device);
        residual.Gated(F1, F2, F3, 0.5f, 600, Stream);
        residual.Gated(B1, B2, B3, 1f, 256, Stream);
        rows.Gather(F1, Ids, F2, 3, 64, Stream);
        rows.Gather(B1, Ids, B2, 2, 32, Stream);
        rows.Broadcast(F1, F2, 5, 48, Stream);
        rows.Broadcast(B1, B2, 7, 16, Stream);
        var l = device.Launches;
        Check(l[0], "e3_gated_residual_f32", Shape(3, 256), F1.Address, F2.Address, F3.Address, 0.5f, 600L);
        Check(l[1], "e3_gated_residual_bf16", Shape(1, 256), B1.Address, B2.Address, B3.Address, 1f, 256L);
        Check(l[2], "e3_gather_rows_f32", RowShape(3), F1.Address, Ids.Address, F2.Address, 3, 64);
        Check(l[3], "e3_gather_rows_bf16", RowShape(2), B1.Address, Ids.Address, B2.Address, 2, 32);
        Check(l[4], "e3_broadcast_row_f32", RowShape(5), F1.Address, F2.Address, 5, 48);
        Check(l[5], "e3_broadcast_row_bf16", RowShape(7), B1.Address, B2.Address, 7, 16);
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
        kernels.QkNormRope(F1, F2, F3, default, 3, 1e-6f, layout, Stream);
        kernels.QkNormRope(B1, B2, B3, B4, 1, 1e-5f, layout with { Heads = 4 }, Stream);
        var l = device.Launches;
        // 6 rows * 5 heads = 30 warps, 4 per block.
        Check(l[0], "e3_head_norm_rope_f32", Shape(8, 128), F1.Address, F2.Address, 6, 5, 128, 1e-6f, 1_000_000f, 3, 17);
        Check(l[1], "e3_head_norm_rope_bf16", Shape(3, 128), B1.Address, 0UL, 6, 2, 128, 1e-6f, 1_000_000f, 3, 17);
        Check(l[2], "e3_rope_backward_f32", Shape(8, 128), F3.Address, F4.Address, 6, 5, 128, 1_000_000f, 3, 17);
        // q and k together: 6 rows * (5 + 3) heads = 48 warps; 6 * (4 + 1) = 30.
        Check(l[3], "e3_qk_norm_rope_f32", Shape(12, 128), F1.Address, F2.Address, F3.Address, 0UL, 3, 6, 5, 128, 1e-6f, 1_000_000f, 3, 17);
        Check(l[4], "e3_qk_norm_rope_bf16", Shape(8, 128), B1.Address, B2.Address, B3.Address, B4.Address, 1, 6, 4, 128, 1e-5f, 1_000_000f, 3, 17);
    }

    [Fact]
    public void AttentionWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new AttentionKernels(device);
        // Prefill: T = 40 rows of 20 heads (group 5), 30 positions already cached.
        var prefill = new AttentionLayout(Batch: 2, TokensPerSequence: 40, StartPosition: 30, Capacity: 100, Heads: 20, KvHeads: 4, HeadDim: 128, Scale: 0.125f);
        kernels.Forward(F1, F2, F3, F4, F5, new DevicePointer<float>(0x6000), new DevicePointer<float>(0x7000), default, prefill, Stream);
        // Decode: 1000 keys; the recorder has 132 SMs, so 528 blocks are wanted over 2 * 4 (kv heads) = 8 per split.
        var decode = prefill with { TokensPerSequence = 1, StartPosition = 999, Capacity = 1000 };
        kernels.Forward(B1, B2, B3, B4, new DevicePointer<Bf16>(0x5500), new DevicePointer<Bf16>(0x6600), default, new DevicePointer<float>(0x8000), decode, Stream);
        var l = device.Launches;
        Assert.Equal(5, l.Count);
        Check(l[0], "e3_kv_append_f32", Shape(160, 256), F2.Address, F3.Address, F4.Address, F5.Address, 2L * 40 * 512, 40, 30, 100, 512);
        // 3 query tiles of 16, 20 heads, 2 sequences; (16*128 + 32*129 + 32*128) floats of shared memory.
        var prefillShape = new LaunchShape(new Dim3(3, 20, 2), new Dim3(128), 41_088);
        Check(l[1], "e3_attention_prefill_f32", prefillShape, F1.Address, F4.Address, F5.Address, 0x6000UL, 0x7000UL, 40, 30, 100, 20, 4, 128, 0.125f);
        Check(l[2], "e3_kv_append_bf16", Shape(4, 256), B2.Address, B3.Address, B4.Address, 0x5500UL, 2L * 512, 1, 999, 1000, 512);
        // 66 splits wanted, capped at 64; 1000 / 64 rounds up to 32 keys, below the 64-key minimum, so 16 splits of 64.
        var decodeShape = new LaunchShape(new Dim3(16, 4, 2), new Dim3(128), 41_088);
        long partials = 2L * 20 * 16 * 128;
        Check(l[3], "e3_attention_decode_bf16", decodeShape, B1.Address, B4.Address, 0x5500UL, 0x8000UL, 0x8000UL + (ulong)partials * 4, 999, 1000, 20, 4, 128, 0.125f, 64);
        Check(l[4], "e3_attention_decode_combine_bf16", new LaunchShape(new Dim3(20, 2), new Dim3(32)), 0x8000UL, 0x8000UL + (ulong)partials * 4, 0x6600UL, 0UL, 20, 128, 16);
    }

    [Fact]
    public void TrainingWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        var layout = new AttentionLayout(Batch: 2, TokensPerSequence: 40, StartPosition: 0, Capacity: 0, Heads: 20, KvHeads: 4, HeadDim: 128, Scale: 0.125f);
        DevicePointer<float> g1 = new(0x6000), g2 = new(0x7000), g3 = new(0x8000), g4 = new(0x9100), g5 = new(0xa000);
        using (var attention = new AttentionKernels(device))
        {
            attention.TrainingForward(F1, F2, F3, F4, F5, layout, Stream);
            attention.Backward(F1, F2, F3, F4, F5, g1, g2, g3, g4, g5, layout, Stream);
        }
        using (var rms = new RmsNormKernels(device)) rms.BackwardRows(F1, F2, F3, F4, F5, 9, 128, 1e-6f, accumulate: true, Stream);
        using (var rope = new RopeKernels(device)) rope.HeadNormRopeBackward(F1, F2, F3, F4, 1e-6f, new RopeLayout(6, 5, 128, 1e6f, 3, 0), Stream);
        using (var residual = new ResidualKernels(device))
        {
            residual.Backward(F1, F2, F3, F4, F4, F5, g1, 0.25f, 70_000L, Stream);
            residual.AddInPlace(F1, F2, 600L, Stream);
        }
        using (var rows = new RowKernels(device)) rows.ColumnSum(F1, F2, 7, 300, Stream);
        using (var embedding = new EmbeddingKernels(device)) embedding.BackwardGrouped(F1, Ids, F2, 4, 64, Stream);
        var l = device.Launches;
        Assert.Equal(10, l.Count);
        // 3 tiles of 16 rows; 20 query heads (dq) or 4 kv heads (dk/dv); (64*128 + 576) floats of shared memory.
        var training = new LaunchShape(new Dim3(3, 20, 2), new Dim3(128), 41_088);
        Check(l[0], "e3_attention_train_forward_f32", training, F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 40, 20, 4, 128, 0.125f);
        Check(l[1], "e3_attention_backward_delta_f32", Shape(400, 128), F4.Address, F5.Address, g2.Address, 2L * 40 * 20, 128);
        Check(l[2], "e3_attention_backward_dq_f32", new LaunchShape(new Dim3(3, 20, 2), new Dim3(128), 35_072),
            F1.Address, F2.Address, F3.Address, F5.Address, g1.Address, g2.Address, g3.Address, 40, 20, 4, 128, 0.125f);
        Check(l[3], "e3_attention_backward_dkdv_f32", new LaunchShape(new Dim3(3, 4, 2), new Dim3(128), 35_072),
            F1.Address, F2.Address, F3.Address, F5.Address, g1.Address, g2.Address, g4.Address, g5.Address, 40, 20, 4, 128, 0.125f);
        Check(l[4], "e3_rmsnorm_backward_rows_f32", RowShape(9), F1.Address, F2.Address, F3.Address, F4.Address, F5.Address, 9, 128, 1e-6f, 1);
        Check(l[5], "e3_head_norm_rope_backward_f32", Shape(8, 128), F1.Address, F2.Address, F3.Address, F4.Address, 6, 5, 128, 1e-6f, 1e6f, 3, 0);
        // ceil(70,000 / 256) = 274 blocks, capped at ResidualKernels.MaxBackwardBlocks.
        Check(l[6], "e3_gated_residual_backward_f32", Shape(256, 256), F1.Address, F2.Address, F3.Address, F4.Address, F4.Address, F5.Address,
            g1.Address, 0.25f, 70_000L);
        Check(l[7], "e3_add_inplace_f32", Shape(3, 256), F1.Address, F2.Address, 600L);
        Check(l[8], "e3_column_sum_f32", Shape(2, 256), F1.Address, F2.Address, 7, 300);
        Check(l[9], "e3_embedding_backward_grouped_f32", RowShape(4), F1.Address, Ids.Address, F2.Address, 4, 64);
        using var refusing = new AttentionKernels(device);
        var start = Assert.Throws<ArgumentOutOfRangeException>(() => refusing.TrainingForward(F1, F2, F3, F4, F5, layout with { StartPosition = 1 }, Stream));
        Assert.Equal("StartPosition", start.ParamName);
        Assert.Equal(10, device.Launches.Count); // nothing queued by the refused call
    }

    [Fact]
    public void AttentionRejectsBadLayoutsNamingTheField()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new AttentionKernels(device);
        var good = new AttentionLayout(1, 4, 0, 8, 4, 2, 64, 0.125f);
        void Run(AttentionLayout layout, DevicePointer<float> workspace = default) =>
            kernels.Forward(F1, F2, F3, F4, F5, F1, default, workspace, layout, Stream);

        Assert.Equal("HeadDim", Assert.Throws<ArgumentOutOfRangeException>(() => Run(good with { HeadDim = 63 })).ParamName);
        Assert.Equal("HeadDim", Assert.Throws<ArgumentOutOfRangeException>(() => Run(good with { HeadDim = 258 })).ParamName);
        Assert.Equal("KvHeads", Assert.Throws<ArgumentOutOfRangeException>(() => Run(good with { KvHeads = 3 })).ParamName);
        Assert.Equal("Batch", Assert.Throws<ArgumentOutOfRangeException>(() => Run(good with { Batch = 65536 })).ParamName); // grid z limit
        var capacity = Assert.Throws<ArgumentOutOfRangeException>(() => Run(good with { StartPosition = 5 }));
        Assert.Equal("Capacity", capacity.ParamName);
        Assert.Contains("positions 5..8 exceed the KV cache capacity", capacity.Message);
        Assert.Equal("Scale", Assert.Throws<ArgumentOutOfRangeException>(() => Run(good with { Scale = float.NaN })).ParamName);
        var workspace = Assert.Throws<ArgumentException>(() => Run(good with { TokensPerSequence = 1 }));
        Assert.Equal("workspace", workspace.ParamName);
        Assert.Contains($"{AttentionKernels.WorkspaceFloats(good)} floats", workspace.Message);
        Assert.Empty(device.Launches); // nothing is queued before the checks pass
    }

    [Fact]
    public void SamplingWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using var kernels = new SamplingKernels(device);
        kernels.ArgMax(F1, 1000, Ids, 3, 999, Stream);
        kernels.ArgMax(B1, 64, Ids, 2, 64, Stream);
        kernels.Sample(F1, 512, Ids, 4, 500, new SamplingSettings(0.5f, 40, 0.9f, 0x1_0000_0002UL, 7), Stream);
        kernels.Sample(B1, 32, Ids, 1, 32, new SamplingSettings(2f, 0, 1f, 5, -3), Stream);
        kernels.TopKLogProbs(F1, 160_000, Ids, F2, 5, 151_936, 10, Stream);
        kernels.TopKLogProbs(B1, 64, Ids, F2, 2, 64, 64, Stream);
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.TopKLogProbs(F1, 64, Ids, F2, 2, 64, 65, Stream));
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.TopKLogProbs(F1, 8, Ids, F2, 2, 8, 9, Stream));
        var l = device.Launches;
        Check(l[0], "e3_argmax_f32", RowShape(3), F1.Address, Ids.Address, 3, 999, 1000);
        Check(l[1], "e3_argmax_bf16", RowShape(2), B1.Address, Ids.Address, 2, 64, 64);
        Check(l[2], "e3_sample_f32", RowShape(4), F1.Address, Ids.Address, 4, 500, 512, 2f, 40, 0.9f, 0x1_0000_0002L, 7L);
        Check(l[3], "e3_sample_bf16", RowShape(1), B1.Address, Ids.Address, 1, 32, 32, 0.5f, 0, 1f, 5L, -3L);
        Check(l[4], "e3_topk_logprobs_f32", RowShape(5), F1.Address, Ids.Address, F2.Address, 5, 151_936, 160_000, 10);
        Check(l[5], "e3_topk_logprobs_bf16", RowShape(2), B1.Address, Ids.Address, F2.Address, 2, 64, 64, 64);
        Assert.Equal(6, l.Count);
    }

    [Fact]
    public void ConvertWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        using (var kernels = new ConvertKernels(device))
        {
            kernels.ToF32(B1, F1, 4096L * 12288, Stream);
            kernels.ToBf16(F2, B2, 7, Stream);
            Assert.Throws<ArgumentOutOfRangeException>(() => kernels.ToBf16(F2, B2, -1, Stream));
        }
        var l = device.Launches;
        // 8 elements a thread (one 16-byte bf16 access): ceil(4096 · 12288 / 2048) = 24,576 blocks.
        Check(l[0], "e3_convert_bf16_to_f32", Shape(24_576, 256), B1.Address, F1.Address, 4096L * 12288);
        Check(l[1], "e3_convert_f32_to_bf16", Shape(1, 256), F2.Address, B2.Address, 7L);
        Assert.Equal(2, l.Count);
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
        using (new ResidualKernels(device))
        using (new RowKernels(device))
        using (new AttentionKernels(device))
        using (new GumbelTopKKernels(device))
        using (new EntropyKdKernels(device))
        using (new SamplingKernels(device))
        using (new ConvertKernels(device))
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
