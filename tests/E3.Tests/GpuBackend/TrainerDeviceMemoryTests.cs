using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Tests.Reference;
using E3.Tests.Support;
using E3.Tests.Training;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// Device memory of the fp32 trainer's GPU backend over bf16 weights, counted by a device that does no work
/// (<see cref="HostOnlyGpuDevice"/>). The trainer reads each bf16 matrix widened to fp32; keeping those copies would cost
/// 4 bytes a parameter on top of the 2 the weights take, so the backend widens into one buffer at each use instead.
/// </summary>
public sealed class TrainerDeviceMemoryTests
{
    static long DevicePeakOverPlan(TrainingCase c, TrainingOptions options, DType weights)
    {
        var device = HostOnlyGpuDevice.H100();
        using var backend = new E3.Backends.Gpu.GpuBackend(device, DType.F32, ownsDevice: false);
        using var model = DecoderModel.Load(c.Folder, backend);
        using (var trainer = new GatedDecoderTrainer(model, options))
        {
            // Two steps, so that whatever the first one leaves (scratch buffers, converted copies) is counted in the second.
            for (int step = 0; step < 2; step++)
                trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
        }
        var plan = TrainingMemoryPlan.Create(model.Config, c.Positions, c.Batch, options, weights);
        return device.Allocations.PeakBytes - plan.Backward;
    }

    [Theory]
    [InlineData(nameof(TrainingMode.Frozen))]
    [InlineData(nameof(TrainingMode.Train))]
    public void Bf16WeightsCostTheFp32TrainerOneWidenedMatrixNotACopyOfEach(string modeName)
    {
        var mode = Enum.Parse<TrainingMode>(modeName); // by name: the enum is internal to the engine
        var options = new TrainingOptions { Mode = mode, ComputeDroppedLayers = true };
        using var bf16 = new TrainingCase("qwen3", false, false, [1f, 0.5f, 1f], batch: 2, positions: 9, storage: ReferenceStorage.BF16);
        using var f32 = new TrainingCase("qwen3", false, false, [1f, 0.5f, 1f], batch: 2, positions: 9, storage: ReferenceStorage.F32);

        // What the device holds beyond the plan (the kernels' own scratch, index buffers) is the same for both storages,
        // except the one fp32 buffer bf16 matrices are widened into: as large as the largest matrix (gate, up and down
        // here, 40 x 24). A copy of every matrix would add 4 bytes for each of the model's matrix elements instead.
        var config = ModelConfig.Load(bf16.Folder);
        long largest = WeightNames.Expected(config).Where(w => w.Shape.Length == 2).Max(w => (long)w.Shape[0] * w.Shape[1]);
        long allMatrices = WeightNames.Expected(config).Where(w => w.Shape.Length == 2).Sum(w => (long)w.Shape[0] * w.Shape[1]);
        Assert.True(allMatrices > 2 * largest); // so that the assertion below tells the two apart

        long widening = DevicePeakOverPlan(bf16, options, DType.BF16) - DevicePeakOverPlan(f32, options, DType.F32);
        Assert.Equal(4 * largest, widening);
    }

    /// <summary>
    /// The fp32 trainer's embedding lookup widens the rows it gathers, not the table: at Qwen3-8B's size the table
    /// widened would be 2.5 GB, and converting it would read 1.2 GB, to fetch a few thousand rows.
    /// </summary>
    [Fact]
    public void TheFp32EmbeddingLookupOfABf16TableWidensOnlyTheRowsItGathers()
    {
        const int vocab = 4096, dim = 64;
        var device = HostOnlyGpuDevice.H100();
        using var backend = new E3.Backends.Gpu.GpuBackend(device, DType.F32, ownsDevice: false);
        using var table = backend.Upload(new byte[vocab * dim * 2], DType.BF16, [vocab, dim], DType.BF16);
        using var y = backend.Allocate(DType.F32, 3, dim);
        device.Allocations.ResetPeak();
        long before = device.Allocations.LiveBytes;
        backend.Embedding(table, [5, 4095, 5], y);
        backend.Synchronize();
        // The ids' small buffer, nothing of the table's size (vocab x dim x 4 bytes = 1 MiB).
        Assert.InRange(device.Allocations.PeakBytes - before, 0, 4096);
    }
}
