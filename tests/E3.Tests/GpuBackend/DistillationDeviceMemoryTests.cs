using E3.Backends;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distill;
using E3.Pruning.Distillation;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary>
/// <see cref="TrainingMemoryPlan"/> for a distillation step on a GPU against the device bytes the engine really
/// allocates there, counted by a device that does no work (<see cref="HostOnlyGpuDevice"/>): the fp32 trainer over a
/// bf16 checkpoint, the dense teacher on a bf16 sibling backend (the default) or on the trainer's own backend
/// (<c>--teacher-dtype f32</c>), and the loss fused with the LM head.
/// </summary>
public sealed class DistillationDeviceMemoryTests : IDisposable
{
    const int Layers = 3, Batch = 2, Sequence = 48;
    readonly TempDir _dir = new();

    public DistillationDeviceMemoryTests() => RandomModel.Write(new RandomModelSpec
    {
        Architecture = Architecture.Qwen3, Layers = Layers, Hidden = 128, Heads = 4, KvHeads = 2, HeadDim = 32, Intermediate = 256,
        Vocab = 512, Seed = 9, Dtype = "bfloat16",
    }, _dir["m"]);

    public void Dispose() => _dir.Dispose();

    /// <summary>Device peak over two steps (the second starts with the trainer's buffers from the first), and the plan.</summary>
    (long Measured, TrainingMemoryPlan Plan) Step(DType teacherActivations, TrainingMode mode, string[] freeze)
    {
        var device = HostOnlyGpuDevice.H100();
        using var trainerBackend = new E3.Backends.Gpu.GpuBackend(device, DType.F32, ownsDevice: false);
        using var sibling = teacherActivations == DType.BF16 ? trainerBackend.CreateSibling(DType.BF16) : null;
        using var teacher = DecoderModel.Load(_dir["m"], sibling ?? (IBackend)trainerBackend,
            sibling != null ? WeightPrecision.BF16 : WeightPrecision.AsStored);
        using var student = DecoderModel.Load(_dir["m"], trainerBackend);
        var gates = LayerMask.Dropping(Layers, [1]).Gates.ToArray();
        var options = new TrainingOptions { Mode = mode, Freeze = freeze };
        using (var trainer = new GatedDecoderTrainer(student, options))
        {
            // A frozen run (the search) trains nothing, the head included.
            var objective = new DistillationObjective(new ModelTeacherSource(teacher), student, gates, new KdOptions(),
                mode == TrainingMode.Frozen ? ["*"] : freeze);
            var inputs = Enumerable.Range(0, Batch * Sequence).Select(i => (i * 37 + 5) % 500).ToArray();
            var targets = inputs.Skip(1).Append(0).ToArray();
            var side = objective.SideGradientNames.ToDictionary(n => n, n => new float[student.Config.VocabSize * student.Config.HiddenSize]);
            for (int step = 0; step < 2; step++)
            {
                trainer.ZeroWeightGradients();
                objective.ForwardBackward(trainer, step, inputs, targets, Batch, side);
            }
        }
        var plan = TrainingMemoryPlan.Create(student.Config, Sequence, Batch, options, DType.BF16, fusedHead: true, PlanTarget.Gpu,
            new DistillationPlan(teacherActivations));
        return (device.Allocations.PeakBytes, plan);
    }

    [Theory]
    [InlineData(DType.BF16, nameof(TrainingMode.Train))]
    [InlineData(DType.F32, nameof(TrainingMode.Train))]
    [InlineData(DType.BF16, nameof(TrainingMode.Frozen))]
    public void PlannedDevicePeakMatchesWhatTheDeviceHolds(DType teacher, string modeName)
    {
        var mode = Enum.Parse<TrainingMode>(modeName); // by name: the enum is internal to the engine
        var (measured, plan) = Step(teacher, mode, mode == TrainingMode.Train ? ["model.layers.0.*"] : []);
        // What the plan leaves out is the kernels' own scratch (row indices, attention statistics, the norm backward's
        // per-row terms of one [rows, hidden] buffer): 3% of this small model's step, where the plan's buffers number a
        // few dozen [rows, hidden]-sized ones; less for a deeper model, whose saved activations grow with its layers.
        double error = Math.Abs(plan.DevicePeak - measured) / (double)measured;
        Assert.True(error <= 0.05, $"planned {plan.DevicePeak} B on the device, measured {measured} B ({error:P1} apart)");
        Assert.Equal(plan.TeacherStage > plan.Backward ? plan.TeacherStage : plan.Backward, plan.DevicePeak);
        Assert.Equal(plan.Optimizer, plan.HostPeak); // the fused loss keeps nothing on the host
    }

    /// <summary>
    /// A search step on a GPU (<see cref="E3.Pruning.Search.GatedKdPass"/>): the teacher is the model itself with every gate
    /// 1, run as an fp32 inference session on the trainer's backend, whose logits the fused loss of each sample reads.
    /// </summary>
    [Fact]
    public void PlannedDevicePeakOfASearchStepMatchesWhatTheDeviceHolds()
    {
        var device = HostOnlyGpuDevice.H100();
        using var backend = new E3.Backends.Gpu.GpuBackend(device, DType.F32, ownsDevice: false);
        using var model = DecoderModel.Load(_dir["m"], backend);
        var options = new TrainingOptions { Mode = TrainingMode.Frozen, ComputeDroppedLayers = true };
        using (var trainer = new GatedDecoderTrainer(model, options))
        {
            var pass = new E3.Pruning.Search.GatedKdPass(model, trainer);
            var inputs = Enumerable.Range(0, Batch * Sequence).Select(i => (i * 37 + 5) % 500).ToArray();
            for (int step = 0; step < 2; step++)
            {
                var teacher = pass.Teacher(inputs, Batch);
                try
                {
                    foreach (var gates in new[] { LayerMask.Dropping(Layers, [1]), LayerMask.Dropping(Layers, [2]) })
                    {
                        pass.Loss(inputs, Batch, gates.Gates.ToArray(), teacher, new KdOptions());
                        pass.Backward();
                    }
                }
                finally
                {
                    (teacher as IDisposable)?.Dispose();
                }
            }
        }
        var plan = TrainingMemoryPlan.Create(model.Config, Sequence, Batch, options, DType.BF16, fusedHead: true, PlanTarget.Gpu,
            new DistillationPlan(DType.F32, IsStudent: true));
        long measured = device.Allocations.PeakBytes;
        double error = Math.Abs(plan.DevicePeak - measured) / (double)measured;
        Assert.True(error <= 0.05, $"planned {plan.DevicePeak} B on the device, measured {measured} B ({error:P1} apart)");
        Assert.Equal(0, plan.TeacherWeights);
    }

    /// <summary>
    /// A whole search on a GPU: the drop-one KL that sets α, the steps, and the final swaps scored by KL, which run
    /// through the search's own trainer (so its buffers are not doubled) and within the plan, with or without
    /// recomputation.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PlannedDevicePeakCoversAWholeSearch(bool checkpointing)
    {
        var device = HostOnlyGpuDevice.H100();
        using var backend = new E3.Backends.Gpu.GpuBackend(device, DType.F32, ownsDevice: false);
        using var model = DecoderModel.Load(_dir["m"], backend);
        var tokens = Enumerable.Range(0, 2000).Select(i => (i * 37 + 5) % 500).ToArray();
        var batches = new E3.Pruning.Search.LiveTeacherBatches(tokens, Sequence, Batch, 1, "tokens");
        var options = new E3.Pruning.Search.SearchOptions { Keep = 2, Steps = 2, Samples = 2, ActivationCheckpointing = checkpointing };
        using (var search = new E3.Pruning.Search.MaskSearch(model, batches, options))
        {
            var state = search.Initialize();
            search.Run(state, null, 1);
            search.FinalKept(state.Alpha);
        }
        var plan = TrainingMemoryPlan.Create(model.Config, Sequence, Batch, new TrainingOptions { Mode = TrainingMode.Frozen, Checkpointing = checkpointing },
            DType.BF16, fusedHead: true, PlanTarget.Gpu, new DistillationPlan(DType.F32, IsStudent: true));
        long measured = device.Allocations.PeakBytes;
        double error = Math.Abs(plan.DevicePeak - measured) / (double)measured;
        Assert.True(error <= 0.05, $"planned {plan.DevicePeak} B on the device, measured {measured} B ({error:P1} apart)");
    }

    [Fact]
    public void ABf16TeacherCostsTheDeviceLessThanAnFp32One()
    {
        var bf16 = Step(DType.BF16, TrainingMode.Frozen, []);
        var f32 = Step(DType.F32, TrainingMode.Frozen, []);
        Assert.True(bf16.Measured < f32.Measured, $"bf16 teacher {bf16.Measured} B, fp32 teacher {f32.Measured} B");
        Assert.True(bf16.Plan.DevicePeak < f32.Plan.DevicePeak);
    }
}
