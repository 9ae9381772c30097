using System.Text.Json.Nodes;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Model.Training;
using E3.Optim;
using E3.Pruning.Data;
using E3.Pruning.Masks;

namespace E3.Pruning.Distill;

/// <summary>Everything one run of <c>e3 train</c> or <c>e3 distill</c> needs besides the loss.</summary>
internal sealed record TrainingJob
{
    /// <summary>The model being trained (its weights change in place).</summary>
    public required DecoderModel Student { get; init; }
    /// <summary>The folder the student was loaded from (its config and tokenizer files are copied to the output).</summary>
    public required string StudentFolder { get; init; }
    /// <summary>Tensors that are not trained (globs over HF names).</summary>
    public IReadOnlyList<string> Freeze { get; init; } = [];
    public required ITrainingObjective Objective { get; init; }
    /// <summary>The training token stream.</summary>
    public required int[] Tokens { get; init; }
    /// <summary>The batches; null for random windows of <see cref="Tokens"/> (<see cref="TokenWindows"/>).</summary>
    public IBatchSource? Batches { get; init; }
    /// <summary>Named in data errors.</summary>
    public required string DataSource { get; init; }
    public required TrainingSettings Settings { get; init; }
    /// <summary>Checkpoint folder, or null for none.</summary>
    public string? CheckpointFolder { get; init; }
    /// <summary>Continue from the checkpoint folder's latest save when there is one.</summary>
    public bool Resume { get; init; }
    /// <summary>The output model folder.</summary>
    public required string Output { get; init; }
    /// <summary>Whether an existing, non-empty <see cref="Output"/> may be replaced (--force).</summary>
    public bool ReplaceOutput { get; init; }
    /// <summary>
    /// Files and folders the run reads besides the student's (the data, a teacher, a mask, a teacher cache): the output
    /// may not hold any of them, since replacing it would delete them.
    /// </summary>
    public IReadOnlyList<string?> Inputs { get; init; } = [];
    /// <summary>What else identifies the run (the command, the teacher, the mask); joined with the settings and data in the fingerprint.</summary>
    public JsonObject Identity { get; init; } = new();
    /// <summary>Files copied into the output folder, by name there.</summary>
    public IReadOnlyDictionary<string, string>? ExtraOutputFiles { get; init; }
    /// <summary>AdamW's betas and epsilon (the weight decay comes from <see cref="Settings"/>).</summary>
    public AdamWOptions Optimizer { get; init; } = new();
    /// <summary>
    /// Keep only each layer's input through the forward and recompute the layer in the backward: one layer's activations
    /// instead of every layer's (40 GiB to 3.4 GiB for Qwen3-8B at 4,096 tokens, by e3 plan), for a third more forward work. The
    /// recomputation is the same arithmetic, so the run's results are the same bits; the flag is not part of the run's
    /// fingerprint, so a checkpoint written with it resumes without it, and the other way round.
    /// </summary>
    public bool ActivationCheckpointing { get; init; }
}

/// <summary>What <see cref="TrainingRunner.Run"/> did.</summary>
/// <param name="Result">The loop's result.</param>
/// <param name="Resumed">True when the run continued from a checkpoint.</param>
/// <param name="Fingerprint">The run's fingerprint (checkpoints of other runs are refused).</param>
/// <param name="TrainableTensors">Tensors trained.</param>
/// <param name="TrainableValues">Scalars trained.</param>
/// <param name="ActivationCheckpointing">Whether the trainer recomputed each layer in the backward.</param>
public sealed record TrainingOutcome(TrainingResult Result, bool Resumed, string Fingerprint, int TrainableTensors, long TrainableValues,
    bool ActivationCheckpointing);

/// <summary>Sets up the trainer, parameters, optimizer and checkpoint of a job, runs the loop and writes the model.</summary>
internal static class TrainingRunner
{
    /// <summary>
    /// Runs <paramref name="job"/> to its last step and writes the output folder. A failure before the end leaves no
    /// output folder (the last checkpoint stays, so the run can be resumed).
    /// </summary>
    public static TrainingOutcome Run(TrainingJob job, Action<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        var s = job.Settings;
        s.Validate();
        if (job.Resume && job.CheckpointFolder == null) throw new ArgumentException("--resume needs --checkpoint DIR");
        // Before any step: an output that cannot be written should not cost a training run first.
        string?[] reads = [job.StudentFolder, job.CheckpointFolder, .. job.Inputs];
        OutputFolder.Check(job.Output, job.ReplaceOutput, reads);
        var windows = job.Batches ?? new WindowBatches(new TokenWindows(job.Tokens, s.Sequence, s.Batch, s.Seed, job.DataSource));
        job.Student.ValidateTokens(job.Tokens, job.DataSource);

        var identity = (JsonObject)job.Identity.DeepClone();
        identity["settings"] = s.ToJson();
        identity["data"] = TrainingCheckpoint.HashTokens(job.Tokens);
        identity["student_config"] = job.Student.Config.Hash();
        identity["freeze"] = new JsonArray(job.Freeze.Select(f => (JsonNode)f).ToArray());
        string fingerprint = TrainingCheckpoint.Fingerprint(identity);

        var parameters = new TrainableParameters(job.Student, job.Freeze);
        using var trainer = new GatedDecoderTrainer(job.Student, new TrainingOptions { Mode = TrainingMode.Train, Freeze = job.Freeze, Checkpointing = job.ActivationCheckpointing });
        using var optimizer = parameters.CreateOptimizer(job.Optimizer with { WeightDecay = s.WeightDecay });
        var checkpoint = job.CheckpointFolder == null ? null : new TrainingCheckpoint(job.CheckpointFolder);
        long start = 0;
        var history = new List<LossPoint>();
        bool resumed = false;
        if (job.Resume && checkpoint!.Exists)
        {
            (start, history) = checkpoint.Load(fingerprint, parameters, optimizer);
            // The fingerprint fixes the run's length; a checkpoint past it was not written by this run.
            if (start > s.TotalSteps)
                throw new TrainingCheckpointException(checkpoint.Folder, "step", $"{start} is beyond this run's {s.TotalSteps} steps");
            parameters.Publish();
            resumed = true;
        }
        var loop = new TrainingLoop(trainer, parameters, optimizer, job.Objective, windows, s);
        Action<long>? save = checkpoint == null ? null : step => checkpoint.Save(step, fingerprint, parameters, optimizer, history);
        var result = start >= s.TotalSteps
            ? new TrainingResult(s.TotalSteps, start, s.TotalSteps * s.TokensPerStep, history.Count > 0 ? history[^1].Loss : double.NaN, history, 0)
            : loop.Run(start, history, save, progress, cancel);
        ModelFolderWriter.Write(job.Student, job.StudentFolder, job.Output, job.ExtraOutputFiles, job.ReplaceOutput, reads);
        return new TrainingOutcome(result, resumed, fingerprint, parameters.Names.Count, parameters.Values.Sum(v => (long)v.Length),
            trainer.Options.Checkpointing);
    }
}
