using System.Text.Json.Nodes;
using E3.Backends;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using Xunit;

namespace E3.Tests.Training;

/// <summary><see cref="TrainingMemoryPlan"/> against bytes really allocated through the backend, and against a published model size.</summary>
public sealed class MemoryPlanTests
{
    [Theory]
    [InlineData("qwen3", nameof(TrainingMode.Frozen), false, false, false)]
    [InlineData("qwen3", nameof(TrainingMode.Train), false, false, false)]
    [InlineData("llama", nameof(TrainingMode.Train), true, true, false)]
    [InlineData("qwen2", nameof(TrainingMode.Frozen), true, false, false)]
    [InlineData("qwen2", nameof(TrainingMode.Train), true, true, false)]
    // A pruned model (layer 2 dropped, its gate 0 below): gradients only for the retained layers 0 and 1.
    [InlineData("qwen3", nameof(TrainingMode.Train), false, false, true)]
    [InlineData("llama", nameof(TrainingMode.Train), true, true, true)]
    [InlineData("qwen2", nameof(TrainingMode.Train), false, false, true)]
    public void PlannedBackwardPeakMatchesMeasuredAllocations(string modelType, string modeName, bool checkpointing, bool bf16, bool pruned)
    {
        var mode = Enum.Parse<TrainingMode>(modeName); // by name: the enum is internal to the engine
        using var c = new TrainingCase(modelType, false, false, [1f, 0.5f, 0f], batch: 3, positions: 11,
            storage: bf16 ? E3.Tests.Reference.ReferenceStorage.BF16 : E3.Tests.Reference.ReferenceStorage.F32);
        using var cpu = new CpuBackend(2);
        using var tracking = new AllocationTrackingBackend(cpu);
        using var model = DecoderModel.Load(c.Folder, tracking);
        var options = new TrainingOptions
        {
            Mode = mode, Checkpointing = checkpointing, ComputeDroppedLayers = true, RetainedLayers = pruned ? LayerMask.Dropping(3, [2]) : null,
        };
        long gradientBytes;
        long measured;
        using (var trainer = new GatedDecoderTrainer(model, options))
        {
            trainer.Backward(c.LossGradient(trainer.Forward(c.Tokens, c.Batch, c.Gates)));
            measured = tracking.PeakBytes;
            gradientBytes = trainer.WeightGradients.Values.Sum(g => g.SizeInBytes);
            if (pruned) Assert.DoesNotContain(trainer.WeightGradients.Keys, n => n.StartsWith("model.layers.2.", StringComparison.Ordinal));
        }

        var plan = TrainingMemoryPlan.Create(model.Config, c.Positions, c.Batch, options, bf16 ? DType.BF16 : DType.F32);
        // The bound is 10%; the plan counts the same buffers the trainer allocates, so it is usually exact.
        double error = Math.Abs(plan.Trainer - measured) / (double)measured;
        Assert.True(error <= 0.10, $"planned {plan.Trainer} B, measured peak {measured} B ({error:P1} apart)");
        Assert.Equal(mode == TrainingMode.Frozen ? 0 : plan.Gradients * 2, plan.OptimizerState);
        // The plan's gradients are exactly the buffers the trainer allocated (so a pruned plan counts retained layers only).
        Assert.Equal(gradientBytes, plan.Gradients);
        if (pruned)
        {
            var full = TrainingMemoryPlan.Create(model.Config, c.Positions, c.Batch, options with { RetainedLayers = null }, bf16 ? DType.BF16 : DType.F32);
            Assert.True(plan.Gradients < full.Gradients && plan.OptimizerState < full.OptimizerState,
                $"pruned plan gradients {plan.Gradients} B / optimizer {plan.OptimizerState} B, full {full.Gradients} B / {full.OptimizerState} B");
            Assert.True(plan.OptimizerValues < full.OptimizerValues);
        }
    }

    /// <summary>
    /// The fused-head path (ForwardHidden, then BackwardFromHidden, as distillation runs) allocates no [rows, V]
    /// logits or dlogits: its measured peak is one such buffer below a dense Forward's (whose logits stay allocated),
    /// the fused plan is two below the dense plan (logits and dlogits) and within 10% of the measured peak, and the
    /// gradients are the same bits as after a dense Forward.
    /// </summary>
    [Theory]
    [InlineData(nameof(TrainingMode.Frozen), false)]
    [InlineData(nameof(TrainingMode.Train), true)]
    public void FusedHeadPathHoldsNoLogits(string modeName, bool checkpointing)
    {
        var mode = Enum.Parse<TrainingMode>(modeName); // by name: the enum is internal to the engine
        using var c = new TrainingCase("qwen3", false, false, [1f, 0.5f, 0f], batch: 3, positions: 11);
        var options = new TrainingOptions { Mode = mode, Checkpointing = checkpointing, ComputeDroppedLayers = true };
        var config = ModelConfig.Load(c.Folder);
        int rows = c.Batch * c.Positions;
        var random = new Random(5);
        var dHidden = new float[rows * config.HiddenSize];
        for (int i = 0; i < dHidden.Length; i++) dHidden[i] = (float)(random.NextDouble() * 2 - 1);

        (long Peak, DecoderGradients Gradients) Run(bool fused)
        {
            using var cpu = new CpuBackend(2);
            using var tracking = new AllocationTrackingBackend(cpu);
            using var model = DecoderModel.Load(c.Folder, tracking);
            using var trainer = new GatedDecoderTrainer(model, options);
            if (fused) trainer.ForwardHidden(c.Tokens, c.Batch, c.Gates);
            else trainer.Forward(c.Tokens, c.Batch, c.Gates);
            var gradients = trainer.BackwardFromHidden(dHidden);
            if (fused)
            {
                var error = Assert.Throws<InvalidOperationException>(() => trainer.Backward(new float[rows * config.VocabSize]));
                Assert.Contains("BackwardFromHidden", error.Message);
            }
            return (tracking.PeakBytes, gradients);
        }

        var dense = Run(fused: false);
        var fused = Run(fused: true);
        Assert.Equal(dense.Gradients.InputEmbeddings, fused.Gradients.InputEmbeddings);
        Assert.Equal(dense.Gradients.Gates, fused.Gradients.Gates);
        // The dense run formed logits but never dlogits (its backward started from the hidden): one [rows, V] buffer apart.
        long logitsBytes = 4L * rows * config.VocabSize;
        Assert.Equal(logitsBytes, dense.Peak - fused.Peak);

        var plan = TrainingMemoryPlan.Create(config, c.Positions, c.Batch, options, DType.F32, fusedHead: true);
        var densePlan = TrainingMemoryPlan.Create(config, c.Positions, c.Batch, options, DType.F32);
        Assert.Equal(2 * logitsBytes, densePlan.Trainer - plan.Trainer);
        double planError = Math.Abs(plan.Trainer - fused.Peak) / (double)fused.Peak;
        Assert.True(planError <= 0.10, $"fused plan {plan.Trainer} B, measured peak {fused.Peak} B ({planError:P1} apart)");
    }

    /// <summary>
    /// The optimizer's host figures are the arrays a training job really holds: the fp32 values of every trainable
    /// tensor and their gathered gradients (<see cref="E3.Pruning.Distill.TrainableParameters"/>), and AdamW's two
    /// moments over them; a frozen tensor has none.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void OptimizerFiguresAreTheTrainingJobsHostArrays(bool tied)
    {
        using var c = new TrainingCase("qwen3", tied, false, [1f, 1f, 1f], storage: E3.Tests.Reference.ReferenceStorage.BF16);
        string[] freeze = ["model.layers.1.*", "model.embed_tokens.weight"];
        using var cpu = new CpuBackend(1);
        using var model = DecoderModel.Load(c.Folder, cpu);
        var parameters = new E3.Pruning.Distill.TrainableParameters(model, freeze);
        var plan = TrainingMemoryPlan.Create(model.Config, 8, 1, new TrainingOptions { Mode = TrainingMode.Train, Freeze = freeze }, DType.BF16);
        Assert.Equal(parameters.Values.Sum(v => 4L * v.Length), plan.OptimizerValues);
        Assert.Equal(parameters.Gradients.Sum(g => 4L * g.Length), plan.OptimizerGradients);
        Assert.Equal(2 * plan.OptimizerValues, plan.OptimizerState);
        Assert.Equal(plan.Gradients, plan.OptimizerGradients); // what the trainer accumulates on its backend is gathered here
        var frozen = TrainingMemoryPlan.Create(model.Config, 8, 1, new TrainingOptions { Freeze = freeze }, DType.BF16);
        Assert.Equal(0, frozen.Optimizer);
    }

    /// <summary>
    /// On a GPU the optimizer's arrays are on the host and the trainer's on the device; on the cpu they share one memory.
    /// A dense teacher on the cpu is fp32 on the trainer's backend; on a GPU a bf16 teacher holds 2 bytes a matrix element.
    /// </summary>
    [Fact]
    public void TheTargetDecidesWhatSharesOneMemory()
    {
        var config = SmallConfig();
        var train = new TrainingOptions { Mode = TrainingMode.Train };
        var teacher = new DistillationPlan(DType.F32);
        var cpu = TrainingMemoryPlan.Create(config, 16, 2, train, DType.BF16, fusedHead: true, PlanTarget.Cpu, teacher);
        var gpu = TrainingMemoryPlan.Create(config, 16, 2, train, DType.BF16, fusedHead: true, PlanTarget.Gpu, teacher);
        Assert.Equal(0, cpu.DevicePeak);
        Assert.Equal(cpu.Optimizer + Math.Max(cpu.TeacherStage, cpu.Backward), cpu.HostPeak);
        Assert.Equal(gpu.Optimizer, gpu.HostPeak);
        Assert.Equal(Math.Max(gpu.TeacherStage, gpu.Backward), gpu.DevicePeak);
        // The GPU trainer widens its largest bf16 matrix (the untied head or embedding, 100 x 32) into one fp32 buffer.
        Assert.Equal(4L * 100 * 32, gpu.WeightWidening);
        Assert.Equal(0, cpu.WeightWidening);
        var bf16Teacher = TrainingMemoryPlan.Create(config, 16, 2, train, DType.BF16, fusedHead: true, PlanTarget.Gpu, teacher with { Activations = DType.BF16 });
        Assert.True(bf16Teacher.TeacherForward * 2 == gpu.TeacherForward && bf16Teacher.TeacherLogits * 2 == gpu.TeacherLogits);
        Assert.Throws<ArgumentException>(() => TrainingMemoryPlan.Create(config, 16, 2, train, DType.BF16, fusedHead: true, PlanTarget.Cpu,
            teacher with { Activations = DType.BF16 }));
    }

    [Fact]
    public void CheckpointingShrinksWhatIsSaved()
    {
        var config = SmallConfig();
        var full = TrainingMemoryPlan.Create(config, 12, 2, new TrainingOptions(), DType.F32);
        var checkpointed = TrainingMemoryPlan.Create(config, 12, 2, new TrainingOptions { Checkpointing = true }, DType.F32);
        Assert.True(checkpointed.SavedActivations < full.SavedActivations);
        Assert.Equal(full.Weights, checkpointed.Weights);
    }

    [Fact]
    public void A32BConfigPlansItsPublishedParameterCount()
    {
        // Qwen2.5-32B's published shape; the model card gives 32.5B parameters (bf16: ~65 GB of weights).
        var json = new JsonObject
        {
            ["model_type"] = "qwen2", ["vocab_size"] = 152064, ["hidden_size"] = 5120, ["intermediate_size"] = 27648,
            ["num_hidden_layers"] = 64, ["num_attention_heads"] = 40, ["num_key_value_heads"] = 8, ["rms_norm_eps"] = 1e-6,
            ["rope_theta"] = 1000000.0, ["tie_word_embeddings"] = false, ["max_position_embeddings"] = 32768, ["torch_dtype"] = "bfloat16",
        };
        var config = ModelConfig.Parse(json);
        var plan = TrainingMemoryPlan.Create(config, 2048, 1, new TrainingOptions { Checkpointing = true }, DType.BF16);
        double parameters = plan.Weights / 2.0;
        Assert.InRange(parameters, 32.4e9, 32.9e9);
        Assert.Equal(0, plan.Gradients);
    }

    static ModelConfig SmallConfig() => ModelConfig.Parse(new JsonObject
    {
        ["model_type"] = "llama", ["vocab_size"] = 100, ["hidden_size"] = 32, ["intermediate_size"] = 64, ["num_hidden_layers"] = 3,
        ["num_attention_heads"] = 4, ["num_key_value_heads"] = 2, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000.0,
        ["tie_word_embeddings"] = false, ["max_position_embeddings"] = 128,
    });
}

/// <summary><c>e3 plan</c> prints the library's plan and rejects bad options with a non-zero exit.</summary>
public sealed class PlanCommandTests
{
    static (int Exit, string Output) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var root = new System.CommandLine.RootCommand { E3.Cli.Commands.PlanCommand.Create() };
        int exit = root.Parse(args).Invoke(new System.CommandLine.InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString());
    }

    [Fact]
    public void JsonOutputIsTheLibraryPlan()
    {
        using var c = new TrainingCase("llama", false, false, [1f, 1f]);
        var (exit, output) = Run("plan", "--model", c.Folder, "--seq", "16", "--batch", "2", "--mode", "train", "--checkpointing", "--json");
        Assert.Equal(0, exit);
        var json = JsonNode.Parse(output)!.AsObject();
        var config = ModelConfig.Load(c.Folder);
        var plan = TrainingMemoryPlan.Create(config, 16, 2, new TrainingOptions { Mode = TrainingMode.Train, Checkpointing = true }, DType.F32);
        Assert.Equal(plan.Backward, (long)json["backward"]!);
        Assert.Equal(plan.Gradients, (long)json["gradients"]!);
        Assert.Equal(plan.OptimizerState, (long)json["optimizer_state"]!);
    }

    [Fact]
    public void DropPlansTheRetainedLayersOnly()
    {
        using var c = new TrainingCase("qwen3", false, false, [1f, 1f, 1f]);
        var (exit, output) = Run("plan", "--model", c.Folder, "--seq", "8", "--mode", "train", "--drop", "0,2", "--json");
        Assert.Equal(0, exit);
        var json = JsonNode.Parse(output)!.AsObject();
        var config = ModelConfig.Load(c.Folder);
        var plan = TrainingMemoryPlan.Create(config, 8, 1,
            new TrainingOptions { Mode = TrainingMode.Train, RetainedLayers = LayerMask.Dropping(3, [0, 2]) }, DType.F32);
        Assert.Equal(1, (long)json["retained_layers"]!);
        Assert.Equal(plan.Gradients, (long)json["gradients"]!);
        var (_, fullOutput) = Run("plan", "--model", c.Folder, "--seq", "8", "--mode", "train", "--json");
        Assert.True((long)json["gradients"]! < (long)JsonNode.Parse(fullOutput)!["gradients"]!);
        Assert.Equal(1, Run("plan", "--model", c.Folder, "--seq", "8", "--drop", "3").Exit); // layer 3 does not exist
        Assert.Equal(2, Run("plan", "--model", c.Folder, "--seq", "8", "--drop", "1", "--prune", "0.5").Exit); // options that cannot go together
    }

    [Fact]
    public void FusedHeadDropsTheLogitsFromThePlan()
    {
        using var c = new TrainingCase("llama", false, false, [1f, 1f]);
        var (exit, output) = Run("plan", "--model", c.Folder, "--seq", "16", "--batch", "2", "--head", "fused", "--json");
        Assert.Equal(0, exit);
        var config = ModelConfig.Load(c.Folder);
        var fused = TrainingMemoryPlan.Create(config, 16, 2, new TrainingOptions(), DType.F32, fusedHead: true);
        Assert.Equal(fused.Trainer, (long)JsonNode.Parse(output)!["trainer"]!);
        var (_, dense) = Run("plan", "--model", c.Folder, "--seq", "16", "--batch", "2", "--json");
        Assert.Equal(2L * 4 * 16 * 2 * config.VocabSize, (long)JsonNode.Parse(dense)!["trainer"]! - fused.Trainer);
        Assert.Equal(2, Run("plan", "--model", c.Folder, "--seq", "16", "--head", "chunked").Exit);
    }

    [Fact]
    public void ADenseTeacherOnCudaIsPlannedOnTheDevice()
    {
        using var c = new TrainingCase("llama", false, false, [1f, 1f]);
        var (exit, output) = Run("plan", "--model", c.Folder, "--seq", "16", "--batch", "2", "--mode", "train", "--device", "cuda", "--dense-teacher", "--json");
        Assert.Equal(0, exit);
        var json = JsonNode.Parse(output)!.AsObject();
        var config = ModelConfig.Load(c.Folder);
        var plan = TrainingMemoryPlan.Create(config, 16, 2, new TrainingOptions { Mode = TrainingMode.Train }, DType.F32, fusedHead: true, PlanTarget.Gpu,
            new DistillationPlan(DType.BF16));
        Assert.Equal("gpu", (string)json["target"]!);
        Assert.Equal(plan.DevicePeak, (long)json["device_peak"]!);
        Assert.Equal(plan.HostPeak, (long)json["host_peak"]!);
        Assert.Equal(plan.TeacherWeights, (long)json["teacher_weights"]!);
        Assert.True(plan.TeacherWeights > 0 && plan.DevicePeak > plan.Trainer);
        // The text names where each figure lives.
        var (_, text) = Run("plan", "--model", c.Folder, "--seq", "16", "--device", "cuda", "--dense-teacher", "--mode", "train");
        Assert.Contains("teacher weights (device)", text);
        Assert.Contains("AdamW moments (host)", text);
        Assert.Contains("peak: device", text);
        // A bf16 teacher needs a GPU, and a teacher dtype needs a teacher.
        Assert.Equal(2, Run("plan", "--model", c.Folder, "--seq", "16", "--mode", "train", "--dense-teacher", "--teacher-dtype", "bf16").Exit);
        Assert.Equal(2, Run("plan", "--model", c.Folder, "--seq", "16", "--mode", "train", "--device", "cuda", "--teacher-dtype", "f32").Exit);
        Assert.Equal(2, Run("plan", "--model", c.Folder, "--seq", "16", "--device", "tpu").Exit);

        // --mode frozen plans the search, whose teacher is the model itself: a forward and logits, no weights of its own.
        var (searchExit, search) = Run("plan", "--model", c.Folder, "--seq", "16", "--device", "cuda", "--dense-teacher", "--json");
        Assert.Equal(0, searchExit);
        var searchJson = JsonNode.Parse(search)!.AsObject();
        Assert.Equal(0, (long)searchJson["teacher_weights"]!);
        Assert.Equal(4L * 16 * config.VocabSize, (long)searchJson["teacher_logits"]!); // fp32 on the trainer's backend
        Assert.True((bool)searchJson["loss_head_on_device"]!);
        Assert.Equal(2, Run("plan", "--model", c.Folder, "--seq", "16", "--dense-teacher", "--teacher-dtype", "f32").Exit);
    }

    [Fact]
    public void UnknownModeFails()
    {
        using var c = new TrainingCase("llama", false, false, [1f]);
        var (exit, output) = Run("plan", "--model", c.Folder, "--seq", "16", "--mode", "finetune");
        Assert.Equal(2, exit);
        Assert.Equal("", output);
    }

    [Fact]
    public void APlanTooLargeToCountIsAnErrorNotANegativeSize()
    {
        using var c = new TrainingCase("llama", false, false, [1f]);
        var config = ModelConfig.Load(c.Folder);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            TrainingMemoryPlan.Create(config, 2_000_000_000, 2_000_000_000, new TrainingOptions { Mode = TrainingMode.Train }, DType.F32));
        Assert.Contains("--seq 2000000000 x --batch 2000000000: the plan exceeds 2^63 bytes", e.Message);
        // A billion rows still fit, with every stage positive and ordered.
        var big = TrainingMemoryPlan.Create(config, 1_000_000, 1_000, new TrainingOptions { Mode = TrainingMode.Train }, DType.F32);
        Assert.True(big.Backward > 0 && big.HostPeak > big.Backward);
    }
}
