using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Pruning.Distill;
using E3.Backends;
using E3.Model;
using E3.Model.Training;

namespace E3.Cli.Commands;

/// <summary><c>e3 plan</c>: the memory a training job needs, on the device and on the host, from the config alone.</summary>
public static class PlanCommand
{
    /// <summary>The <c>plan</c> command; the caller adds it to the root.</summary>
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder or config.json (no weights are read)", Required = true };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", Required = true };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 1 };
        var mode = new Option<string>("--mode") { Description = "frozen (gate gradients only) or train (weight gradients too)", DefaultValueFactory = _ => "frozen" };
        var checkpointing = new Option<bool>("--checkpointing", "--activation-checkpointing") { Description = "Keep only each layer's input and recompute it in the backward" };
        var freeze = new Option<string?>("--freeze") { Description = "Comma-separated glob patterns of tensor names that get no gradient" };
        var weights = new Option<string>("--weights") { Description = "Projection weights: stored (config torch_dtype), f32 or bf16", DefaultValueFactory = _ => "stored" };
        var drop = CommonOptions.Drop();
        drop.Description = "Plan the pruned model: comma-separated layer indices it drops (train mode counts gradients and optimizer state of the retained layers only)";
        var prune = new Option<double?>("--prune") { Description = "Plan the pruned model that drops the last round(R·L) layers (instead of --drop)" };
        var head = new Option<string?>("--head")
        {
            Description = "logits: the trainer forms [rows, vocab] logits and their gradient (train; search on the cpu); " +
                "fused: the loss is fused with the LM head and the trainer holds none (distill; search on cuda and emu). Default: as the job with --dense-teacher runs, else logits",
        };
        var device = CommonOptions.Device();
        device.Description = "The backend the job runs on: cpu (one memory for everything), or cuda or emu (the trainer and teacher on the device, the optimizer on the host)";
        var denseTeacher = new Option<bool>("--dense-teacher")
        {
            Description = "Count a dense teacher (no --teacher-cache): with --mode train distill's (its weights, forward and logits); " +
                "with --mode frozen the search's (the model itself with every gate 1: its forward and logits; a search with --teacher-cache " +
                "still runs it for --init kl and --refine-swaps)",
        };
        var teacherDType = CommonOptions.TeacherDType();
        var json = CommonOptions.Json();
        var cmd = new Command("plan", "Print the memory a training job needs: the trainer, a dense teacher, the loss and the optimizer, on the device and on the host")
            { model, seq, batch, mode, checkpointing, freeze, weights, drop, prune, head, device, denseTeacher, teacherDType, json };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            var config = ModelConfig.Load(p.GetValue(model)!);
            var options = new TrainingOptions
            {
                Mode = p.GetValue(mode) switch
                {
                    "frozen" => TrainingMode.Frozen,
                    "train" => TrainingMode.Train,
                    var s => throw new UsageException($"--mode: '{s}' is not one of frozen, train"),
                },
                Checkpointing = p.GetValue(checkpointing),
                Freeze = (p.GetValue(freeze) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                RetainedLayers = (p.GetValue(drop), p.GetValue(prune)) switch
                {
                    (null, null) => null,
                    ({ } list, null) => LayerMask.ParseDropList(config.NumLayers, list),
                    (null, { } ratio) => LayerMask.DropLast(config.NumLayers, ratio),
                    _ => throw new UsageException("give at most one of --drop LIST and --prune RATIO"),
                },
            };
            var weightType = p.GetValue(weights) switch
            {
                "stored" => MemoryFit.StoredWeights(config),
                "f32" => DType.F32,
                "bf16" => DType.BF16,
                var s => throw new UsageException($"--weights: '{s}' is not one of stored, f32, bf16"),
            };
            var target = p.GetValue(device) switch
            {
                "cpu" => PlanTarget.Cpu,
                "cuda" or "emu" => PlanTarget.Gpu,
                var s => throw new UsageException($"--device: '{s}' is not one of cpu, cuda, emu"),
            };
            bool dense = p.GetValue(denseTeacher);
            string? teacherType = p.GetValue(teacherDType);
            if (!dense && teacherType != null) throw new UsageException("--teacher-dtype plans a dense teacher: give --dense-teacher too");
            bool search = dense && options.Mode == TrainingMode.Frozen;
            if (search && teacherType != null)
                throw new UsageException("--teacher-dtype: the search's teacher (--mode frozen) is the model itself with every gate 1, computed in f32 as it is");
            DistillationPlan? teacher = !dense ? null : search ? new DistillationPlan(DType.F32, IsStudent: true) : new DistillationPlan((teacherType, target) switch
            {
                (null, PlanTarget.Gpu) or ("bf16", PlanTarget.Gpu) => DType.BF16,
                (null, PlanTarget.Cpu) or ("f32", _) => DType.F32,
                ("bf16", _) => throw new UsageException("--teacher-dtype: bf16 needs --device cuda or emu (the cpu backend computes in f32)"),
                _ => throw new UsageException($"--teacher-dtype: '{teacherType}' is not one of bf16, f32"),
            });
            bool fused = p.GetValue(head) switch
            {
                // distill always fuses its loss with the head; the search does on a GPU (GatedKdPass).
                null => dense && (!search || target == PlanTarget.Gpu),
                "logits" => false,
                "fused" => true,
                var s => throw new UsageException($"--head: '{s}' is not one of logits, fused"),
            };
            var plan = TrainingMemoryPlan.Create(config, p.GetValue(seq), p.GetValue(batch), options, weightType, fused, target, teacher);
            int retained = options.RetainedLayers?.KeptCount ?? config.NumLayers;
            p.InvocationConfiguration.Output.Write(p.GetValue(json) ? Json(plan, retained) : Text(plan, retained));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    // JsonObject rather than JsonSerializer: the trimmed publish has reflection-based serialization switched off.
    static string Json(TrainingMemoryPlan plan, int retainedLayers) => new JsonObject
    {
        ["retained_layers"] = retainedLayers, ["target"] = plan.Target == PlanTarget.Gpu ? "gpu" : "cpu",
        ["weights"] = plan.Weights, ["weight_widening"] = plan.WeightWidening, ["saved_activations"] = plan.SavedActivations,
        ["backward_scratch"] = plan.BackwardScratch, ["gradients"] = plan.Gradients,
        ["teacher_weights"] = plan.TeacherWeights, ["teacher_forward"] = plan.TeacherForward, ["teacher_logits"] = plan.TeacherLogits,
        ["loss_head"] = plan.LossHead, ["loss_head_on_device"] = plan.LossHeadOnDevice,
        ["optimizer_values"] = plan.OptimizerValues, ["optimizer_gradients"] = plan.OptimizerGradients, ["optimizer_state"] = plan.OptimizerState,
        ["trainer"] = plan.Trainer, ["teacher_stage"] = plan.TeacherStage, ["backward"] = plan.Backward, ["optimizer"] = plan.Optimizer,
        ["device_peak"] = plan.DevicePeak, ["host_peak"] = plan.HostPeak,
    }.ToJsonString() + Environment.NewLine;

    static string Text(TrainingMemoryPlan plan, int retainedLayers)
    {
        bool gpu = plan.Target == PlanTarget.Gpu;
        string backend = gpu ? "device" : "host";
        var lines = new List<(string, long)>
        {
            ($"weights ({backend})", plan.Weights),
        };
        if (gpu) lines.Add(("weight widening (device)", plan.WeightWidening));
        lines.AddRange([
            ($"saved activations ({backend})", plan.SavedActivations), ($"backward scratch ({backend})", plan.BackwardScratch),
            ($"gradients, fp32 ({backend})", plan.Gradients),
        ]);
        if (plan.TeacherLogits > 0)
            lines.AddRange([
                ($"teacher weights ({backend})", plan.TeacherWeights), ($"teacher forward ({backend})", plan.TeacherForward),
                ($"teacher logits ({backend})", plan.TeacherLogits),
            ]);
        lines.Add(($"loss head ({(plan.LossHeadOnDevice ? "device" : "host")})", plan.LossHead));
        if (plan.Optimizer > 0)
            lines.AddRange([
                ("optimizer values (host)", plan.OptimizerValues), ("optimizer gradients (host)", plan.OptimizerGradients),
                ("AdamW moments (host)", plan.OptimizerState),
            ]);
        if (plan.TeacherLogits > 0) lines.Add(("stage: teacher forward", plan.TeacherStage));
        lines.Add(("stage: forward+backward", plan.Backward));
        if (gpu) lines.Add(("peak: device", plan.DevicePeak));
        lines.Add(("peak: host", plan.HostPeak));
        return $"{"retained layers",-30}{retainedLayers,14}{Environment.NewLine}"
            + string.Concat(lines.Select(l => $"{l.Item1,-30}{Size(l.Item2),14}{l.Item2,20:N0} B{Environment.NewLine}"));
    }

    static string Size(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F2} GiB" : $"{bytes / (double)(1L << 20):F2} MiB";
}
