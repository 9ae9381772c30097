using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Backends;
using E3.Model;
using E3.Model.Training;

namespace E3.Cli.Commands;

/// <summary><c>e3 plan</c>: the memory a forward+backward (and optimizer step) needs, from the config alone.</summary>
public static class PlanCommand
{
    /// <summary>The <c>plan</c> command; the caller adds it to the root.</summary>
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder or config.json (no weights are read)", Required = true };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence", Required = true };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 1 };
        var mode = new Option<string>("--mode") { Description = "frozen (gate gradients only) or train (weight gradients too)", DefaultValueFactory = _ => "frozen" };
        var checkpointing = new Option<bool>("--checkpointing") { Description = "Keep only each layer's input and recompute it in the backward" };
        var freeze = new Option<string?>("--freeze") { Description = "Comma-separated glob patterns of tensor names that get no gradient" };
        var weights = new Option<string>("--weights") { Description = "Projection weights: stored (config torch_dtype), f32 or bf16", DefaultValueFactory = _ => "stored" };
        var drop = CommonOptions.Drop();
        drop.Description = "Plan the pruned model: comma-separated layer indices it drops (train mode counts gradients and optimizer state of the retained layers only)";
        var prune = new Option<double?>("--prune") { Description = "Plan the pruned model that drops the last round(R·L) layers (instead of --drop)" };
        var head = new Option<string>("--head")
        {
            Description = "logits: the trainer forms [rows, vocab] logits and their gradient (train; search on the cpu); fused: the loss is fused with the LM head and the trainer holds none (distill; search on cuda and emu)",
            DefaultValueFactory = _ => "logits",
        };
        var json = CommonOptions.Json();
        var cmd = new Command("plan", "Print the memory each training stage needs: weights, activations, gradients, optimizer state")
            { model, seq, batch, mode, checkpointing, freeze, weights, drop, prune, head, json };
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
                "stored" => config.TorchDtype is "bfloat16" or "float16" ? DType.BF16 : DType.F32,
                "f32" => DType.F32,
                "bf16" => DType.BF16,
                var s => throw new UsageException($"--weights: '{s}' is not one of stored, f32, bf16"),
            };
            bool fused = p.GetValue(head) switch
            {
                "logits" => false,
                "fused" => true,
                var s => throw new UsageException($"--head: '{s}' is not one of logits, fused"),
            };
            var plan = TrainingMemoryPlan.Create(config, p.GetValue(seq), p.GetValue(batch), options, weightType, fused);
            int retained = options.RetainedLayers?.KeptCount ?? config.NumLayers;
            p.InvocationConfiguration.Output.Write(p.GetValue(json) ? Json(plan, retained) : Text(plan, retained));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    // JsonObject rather than JsonSerializer: the trimmed publish has reflection-based serialization switched off.
    static string Json(TrainingMemoryPlan plan, int retainedLayers) => new JsonObject
    {
        ["retained_layers"] = retainedLayers,
        ["weights"] = plan.Weights, ["saved_activations"] = plan.SavedActivations, ["backward_scratch"] = plan.BackwardScratch,
        ["gradients"] = plan.Gradients, ["optimizer_state"] = plan.OptimizerState, ["master_weights"] = plan.MasterWeights,
        ["forward"] = plan.Forward, ["backward"] = plan.Backward, ["optimizer_step"] = plan.OptimizerStep, ["peak"] = plan.Peak,
    }.ToJsonString() + Environment.NewLine;

    static string Text(TrainingMemoryPlan plan, int retainedLayers)
    {
        var lines = new (string, long)[]
        {
            ("weights", plan.Weights), ("saved activations", plan.SavedActivations), ("backward scratch", plan.BackwardScratch),
            ("gradients (fp32)", plan.Gradients), ("optimizer state (AdamW)", plan.OptimizerState), ("master weights (fp32)", plan.MasterWeights),
            ("stage: forward", plan.Forward), ("stage: backward", plan.Backward), ("stage: optimizer step", plan.OptimizerStep), ("peak", plan.Peak),
        };
        return $"{"retained layers",-26}{retainedLayers,14}{Environment.NewLine}"
            + string.Concat(lines.Select(l => $"{l.Item1,-26}{Size(l.Item2),14}{l.Item2,20:N0} B{Environment.NewLine}"));
    }

    static string Size(long bytes) => bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F2} GiB" : $"{bytes / (double)(1L << 20):F2} MiB";
}
