using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Pruning.Distill;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distillation;
using E3.Pruning.Masks;
using E3.Pruning.TeacherCache;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 distill</c>: trains a student (another model folder, or the teacher's own weights under a layer mask) with
/// the entropy-weighted KD loss against the teacher run with every gate at 1.
/// </summary>
public static class DistillCommand
{
    /// <summary>The command, for the root of the <c>e3</c> command tree.</summary>
    public static Command Create()
    {
        var teacherOption = new Option<string>("--teacher") { Description = "Teacher Hugging Face model folder", Required = true };
        var studentOption = new Option<string?>("--student") { Description = "Student model folder (same vocabulary as the teacher)" };
        var maskOption = new Option<string?>("--mask") { Description = "mask.json: the student is the teacher with these layers dropped (not computed, not trained)" };
        var kdWeight = new Option<string>("--kd-weight") { Description = "Per-token weight from the teacher's entropy: linear, softmax or none", DefaultValueFactory = _ => "linear" };
        var kdTemperature = CommonOptions.Above(new Option<double>("--kd-temperature") { Description = "Softmax temperature tau of both distributions", DefaultValueFactory = _ => 1.0 }, 0);
        var kdFraction = CommonOptions.Above(new Option<double>("--kd-fraction") { Description = "lambda in [0, 1]: 1 is pure KD, below 1 mixes in next-token cross-entropy", DefaultValueFactory = _ => 1.0 }, 0, orEqual: true);
        kdFraction.Validators.Add(r => { if (r.GetValueOrDefault<double>() > 1) r.AddError($"--kd-fraction: {r.GetValueOrDefault<double>()} must be at most 1"); });
        var cacheOption = new Option<string?>("--teacher-cache") { Description = "Top-K teacher cache of --data (e3 teacher-cache) instead of running the teacher; --seq must be its sequence length" };
        var teacherDType = CommonOptions.TeacherDType();
        var freezeOption = new Option<string[]>("--freeze") { Description = "Glob of HF tensor names not to train (repeatable), e.g. 'model.embed_tokens.*'", AllowMultipleArgumentsPerToken = true };
        var o = new TrainingCliOptions();
        o.Data.Required = true;
        var cmd = new Command("distill", "Heal a pruned or smaller student with entropy-weighted distillation from the teacher (checkpoints, --resume)")
        {
            teacherOption, studentOption, maskOption, cacheOption, teacherDType, kdWeight, kdTemperature, kdFraction, freezeOption,
        };
        foreach (var option in o.All) cmd.Options.Add(option);
        cmd.SetAction(p => CliRunner.Guard(() => Interruption.Run(cancel =>
        {
            string teacherDir = p.GetValue(teacherOption)!, data = p.GetValue(o.Data)!, output = p.GetValue(o.Out)!;
            string? studentDir = p.GetValue(studentOption), maskPath = p.GetValue(maskOption);
            if ((studentDir == null) == (maskPath == null)) throw new UsageException("give exactly one of --student DIR and --mask mask.json");
            var settings = o.Settings(p);
            settings.Validate();
            var kd = new KdOptions
            {
                Temperature = p.GetValue(kdTemperature), KdFraction = p.GetValue(kdFraction),
                Weighting = p.GetValue(kdWeight) switch
                {
                    "linear" => EntropyWeighting.Linear,
                    "softmax" => EntropyWeighting.Softmax,
                    "none" => EntropyWeighting.None,
                    var other => throw new UsageException($"--kd-weight: '{other}' is not one of linear, softmax, none"),
                },
            };
            kd.Validate();
            var freeze = (p.GetValue(freezeOption) ?? []).ToList();

            string? cachePath = p.GetValue(cacheOption);
            if (cachePath != null && p.GetValue(teacherDType) is { } given)
                throw new UsageException($"--teacher-dtype {given}: the teacher is not run with --teacher-cache {cachePath}");
            var request = new DistillationRequest
            {
                Teacher = teacherDir, Student = studentDir, Mask = maskPath, TeacherCache = cachePath,
                Data = data, Output = output, ReplaceOutput = p.GetValue(o.Force),
                Settings = settings, Kd = kd, Freeze = freeze,
                CheckpointFolder = p.GetValue(o.Checkpoint), Resume = p.GetValue(o.Resume), ActivationCheckpointing = p.GetValue(o.ActivationCheckpointing),
            };
            Distiller.Check(request); // a bad config, mask or vocabulary is reported as itself, before a device is opened
            using var backend = CliRunner.CreateTrainingBackend(p.GetValue(o.Device)!, p.GetValue(o.Threads), p.GetValue(o.Tf32));
            if (cachePath == null) request = request with { TeacherActivations = CliRunner.TeacherActivations(backend, p.GetValue(teacherDType)) };
            // The memory check runs inside the progress display (it needs the run's backends); on a terminal its warnings
            // are held until the display ends, so the bar's redraws cannot garble them.
            var warnings = Console.IsErrorRedirected ? Console.Error : new StringWriter();
            TrainingOutcome outcome;
            try
            {
                outcome = TrainingConsole.Run("distill", progress => Distiller.Run(backend, request, progress, cancel,
                    setup => MemoryFit.CheckDistill(setup, request, backend, CliRunner.Warning(warnings), canFreeze: true)));
            }
            finally
            {
                if (warnings is StringWriter held) Console.Error.Write(held.ToString());
            }
            TrainingConsole.Report("distill", outcome, output, p.GetValue(o.Json));
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
