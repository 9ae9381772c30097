using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distill;
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
        cmd.SetAction(p => CliRunner.Guard(() =>
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
            var teacherConfig = ModelConfig.Load(teacherDir);
            string studentFolder = studentDir ?? teacherDir;
            var studentConfig = studentDir == null ? teacherConfig : ModelConfig.Load(studentDir);
            // A separate student (another model, or e3 export's pruned one) runs every one of its own layers.
            LayerMask gates = LayerMask.All(studentConfig.NumLayers);
            var identity = new JsonObject { ["command"] = "distill", ["teacher_config"] = teacherConfig.Hash(), ["kd"] = KdJson(kd) };
            Dictionary<string, string>? extra = null;
            if (maskPath != null)
            {
                var mask = MaskFile.Load(maskPath);
                mask.EnsureMatches(teacherConfig, maskPath);
                gates = mask.ToLayerMask();
                freeze.AddRange(mask.Dropped.Select(i => $"model.layers.{i}.*"));
                identity["mask"] = CliRunner.ToJsonArray(mask.Kept);
                extra = new Dictionary<string, string> { ["mask.json"] = maskPath };
            }
            DistillationObjective.RequireSameVocabulary(teacherConfig.VocabSize, teacherConfig.SourcePath, studentConfig);

            using var backend = CliRunner.CreateTrainingBackend(p.GetValue(o.Device)!, p.GetValue(o.Threads), p.GetValue(o.Tf32));
            using var cache = cachePath == null ? null : TeacherCacheReader.Open(cachePath);
            var (teacherBackend, teacherPrecision) = cache == null ? CliRunner.CreateTeacherBackend(backend, p.GetValue(teacherDType)) : (null, default);
            using var ownTeacherBackend = teacherBackend;
            bool recompute = p.GetValue(o.ActivationCheckpointing);
            MemoryFit.Check("distill", TrainingMemoryPlan.Create(studentConfig, settings.Sequence, settings.Batch,
                new TrainingOptions { Mode = TrainingMode.Train, Freeze = freeze, Checkpointing = recompute }, MemoryFit.StoredWeights(studentFolder, studentConfig),
                fusedHead: true, TrainingMemoryPlan.TargetOf(backend), cache == null ? new DistillationPlan((teacherBackend ?? backend).ActivationType, teacherConfig,
                    Weights: teacherBackend == null ? MemoryFit.StoredWeights(teacherDir, teacherConfig) : null) : null),
                backend, Console.Error, recompute, canFreeze: true);
            using var student = DecoderModel.Load(studentFolder, backend);
            int[] tokens = EvalCommand.LoadTokens(data, studentFolder, student.Config.VocabSize);
            using var teacher = cache == null ? DecoderModel.Load(teacherDir, teacherBackend ?? backend, teacherPrecision) : null;
            IKdTeacherSource source;
            IBatchSource? batches = null;
            if (cache != null)
            {
                string teacherId = TeacherCacheCommand.ModelId(teacherDir);
                if (!cache.Header.IsForModel(teacherId))
                    throw new TeacherCacheException(cachePath!, "model id", $"'{cache.Header.ModelId}': the cache was made for another model than --teacher '{teacherId}'");
                var cached = new TeacherCacheBatches(cache, tokens, data, settings.Batch, settings.Seed, kd.IgnoreIndex);
                if (cached.SequenceLength != settings.Sequence)
                    throw new ArgumentException($"--seq: {settings.Sequence} differs from the sequence length {cached.SequenceLength} of the teacher cache {cachePath}");
                source = cached;
                batches = cached;
                identity["teacher_cache"] = $"{cache.Header.DataChecksum:x8}/{cache.Header.K}/{cache.Header.ModelId}";
            }
            else source = new ModelTeacherSource(teacher!);
            var job = new TrainingJob
            {
                Student = student, StudentFolder = studentFolder, Freeze = freeze,
                Objective = new DistillationObjective(source, student, gates.Gates.ToArray(), kd, freeze), Batches = batches,
                Tokens = tokens, DataSource = data, Settings = settings, CheckpointFolder = p.GetValue(o.Checkpoint), Resume = p.GetValue(o.Resume),
                ActivationCheckpointing = recompute,
                Output = output, ReplaceOutput = p.GetValue(o.Force), Inputs = [data, teacherDir, cachePath, maskPath], Identity = identity,
                ExtraOutputFiles = extra,
            };
            var outcome = TrainingConsole.Run("distill", progress => TrainingRunner.Run(job, progress));
            TrainingConsole.Report("distill", outcome, output, p.GetValue(o.Json));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    static JsonObject KdJson(KdOptions kd) => new()
    {
        ["temperature"] = kd.Temperature, ["fraction"] = kd.KdFraction, ["weighting"] = kd.Weighting.ToString(), ["direction"] = kd.Direction.ToString(),
    };
}
