using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using E3.Backends;
using E3.Interop.IO;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Model.IO;
using E3.Pruning.Baselines;
using E3.Pruning.Bench;
using E3.Pruning.Distill;
using E3.Pruning.Export;
using E3.Pruning.Masks;
using E3.Pruning.Reports;
using E3.Pruning.Search;
using E3.Pruning.TeacherCache;

namespace E3.Pruning.Pipeline;

/// <summary>
/// The stages of <see cref="Pruner.Run"/>, each the library call its e3 command makes, with that command's defaults.
/// Each stage opens the device itself (for inference or for training) and releases it, so that no two stages hold a
/// model on it at once.
/// </summary>
internal sealed class PrunePipeline(PruneRequest s, Action<PruneProgress> progress, Action<SearchState, MaskFile>? searchFinished, CancellationToken cancel)
{
    /// <summary>Held-out tokens per evaluation window (<c>e3 compare</c>'s default).</summary>
    const int EvalWindow = 256;

    /// <summary>Steps between the search's checkpoints (<c>e3 search</c>'s default).</summary>
    const int SearchCheckpointEvery = 50;

    string _out = "";

    string Sub(params string[] parts) => Path.Combine([_out, .. parts]);

    public PruneOutcome Run()
    {
        s.Validate();
        var config = ModelConfig.Load(s.Model);
        int keep = s.KeepOf(config);
        _out = Path.GetFullPath(s.Output);
        var (train, heldout) = SplitData(config);
        if (Directory.Exists(_out) && Directory.EnumerateFileSystemEntries(_out).Any() && !s.Resume)
            throw new ArgumentException($"--out: {_out} already exists and is not empty; pass --resume to continue that run, or choose another folder");
        Directory.CreateDirectory(_out);
        var stages = new PruneStages(_out, s.Resume, progress, cancel);
        stages.RequireSameRun(s.Identity(config, keep), new PruneRequest { Model = s.Model, Data = s.Data, Output = s.Output }.Identity(config, keep));
        string trainFile = Sub("data", "train.bin"), heldoutFile = Sub("data", "heldout.bin");
        if (s.Resume && File.Exists(trainFile) && File.Exists(heldoutFile))
        {
            // A resumed run trains and evaluates on the split it started with.
            train = DataTokens.Read(trainFile, s.Model, config.VocabSize);
            heldout = DataTokens.Read(heldoutFile, s.Model, config.VocabSize);
        }
        else
        {
            Directory.CreateDirectory(Sub("data"));
            TokenFile.WriteBin(trainFile, train);
            TokenFile.WriteBin(heldoutFile, heldout);
        }

        var masks = new Dictionary<string, string>();
        Directory.CreateDirectory(Sub("masks"));
        foreach (var name in s.Baselines)
        {
            string mask = Sub("masks", name + ".json");
            string stage = "baseline-" + name;
            stages.Run(stage, $"{name}, keep {keep} of {config.NumLayers} layers",
                () => Baseline(stage, BaselineMethods.Parse(name), train, trainFile, keep, mask, Sub("checkpoints", stage)));
            masks[name] = mask;
        }

        // The offline teacher: its top-K of every token of the sequences the search and the distillations train on,
        // computed once. Those sequences are spread over the split, as many as the larger budget needs.
        string? cache = null;
        int[] trainingTokens = train;
        string trainingFile = trainFile;
        if (s.TeacherCacheK > 0)
        {
            cache = Sub("teacher-cache.e3tc");
            trainingFile = Sub("data", "cache-train.bin");
            if (s.Resume && File.Exists(trainingFile)) trainingTokens = DataTokens.Read(trainingFile, s.Model, config.VocabSize);
            else
            {
                trainingTokens = CachedSequences(train);
                TokenFile.WriteBin(trainingFile, trainingTokens);
            }
            var cached = trainingTokens;
            stages.Run("teacher-cache", $"the teacher's top-{s.TeacherCacheK} log-probabilities of {cached.Length} training tokens",
                () => TeacherCache(cached, cache), outputStays: () => File.Exists(cache));
        }

        string e3Mask = Sub("masks", "e3.json");
        var search = stages.Run("search", $"Gumbel-TopK mask search on {s.SearchTokens} tokens, keep {keep}{(cache != null ? $", from the top-{s.TeacherCacheK} teacher cache" : "")}",
            () => Search(config, trainingTokens, trainingFile, keep, e3Mask, Sub("checkpoints", "search"), cache));
        masks["e3"] = e3Mask;

        var before = stages.Run("compare-masks", $"{masks.Count} masks against the teacher on held-out text",
            () => Compare("compare-masks", [.. masks.Values], [], heldout, Sub("comparison-masks.md")));
        var rows = Rows(before);
        string? bestBaseline = s.DistillBestBaseline
            ? rows.Where(r => r.Method is not ("e3" or "full")).OrderBy(r => r.Kl).Select(r => Path.GetFileNameWithoutExtension(r.Name)).FirstOrDefault()
            : null;

        var healed = new List<(string Method, string Folder)>();
        foreach (var method in bestBaseline == null ? ["e3"] : new[] { "e3", bestBaseline })
        {
            string distilled = Sub("work", "distilled-" + method), exported = Sub("model-" + method);
            stages.Run("distill-" + method, $"heal the {method} mask on {s.DistillTokens} tokens{(cache != null ? $", from the top-{s.TeacherCacheK} teacher cache" : "")}",
                () => Distill("distill-" + method, masks[method], trainingFile, distilled, Sub("checkpoints", "distill-" + method), cache));
            stages.Run("export-" + method, $"write the healed {method} model without its dropped layers",
                () => Export("export-" + method, distilled, masks[method], exported));
            healed.Add((method, exported));
        }

        var after = stages.Run("compare-healed", $"{healed.Count} healed models against the teacher on held-out text",
            () => Compare("compare-healed", [], [.. healed.Select(h => h.Folder)], heldout, output: null));
        var learned = MaskFile.Load(e3Mask);
        var speed = stages.Run("speedup", $"full vs pruned, prefill {s.BenchPrefill} and decode {s.BenchDecode} tokens, {s.BenchRepeats} repeats",
            () => Speedup(learned));

        var report = PruneReport.Build(s, config, learned, rows, Rows(after), healed, search, speed, File.Exists(Sub("search.png")));
        string reportJson = Sub("report.json"), reportMarkdown = Sub("report.md");
        AtomicFile.WriteAllText(reportJson, ResultJson.Format(report.Json));
        AtomicFile.WriteAllText(reportMarkdown, report.Markdown);
        return report.Outcome(learned, reportMarkdown, reportJson);
    }

    /// <summary>Tokens for training and for held-out evaluation (the end of --data unless --eval-data is given).</summary>
    (int[] Train, int[] Heldout) SplitData(ModelConfig config)
    {
        int[] all = DataTokens.Read(s.Data, s.Model, config.VocabSize);
        int[] train, heldout;
        if (s.EvalData != null)
        {
            train = all;
            heldout = DataTokens.Read(s.EvalData, s.Model, config.VocabSize);
        }
        else
        {
            int cut = all.Length - (int)Math.Ceiling(all.Length * s.Holdout);
            train = all[..cut];
            heldout = all[cut..];
        }
        if (train.Length < s.Sequence + 1)
            throw new InvalidDataException($"{s.Data}: {train.Length} training tokens after the held-out split; --seq {s.Sequence} needs at least {s.Sequence + 1}");
        if (heldout.Length < 2) throw new InvalidDataException($"{s.EvalData ?? s.Data}: {heldout.Length} held-out tokens; at least 2 are needed");
        return (train, heldout);
    }

    /// <summary>
    /// The sequences a teacher cache holds: enough for the larger of the search's and a distillation's budget (each then
    /// sees about one pass over them), at evenly spaced, non-overlapping offsets across the split; the whole split when
    /// it is not much larger.
    /// </summary>
    int[] CachedSequences(int[] train)
    {
        int seq = s.Sequence;
        long wanted = (Math.Max(s.SearchTokens, s.DistillTokens) + seq - 1) / seq;
        int available = train.Length / seq;
        if (wanted >= available) return train;
        int n = (int)wanted;
        var picked = new int[n * seq];
        for (int i = 0; i < n; i++)
        {
            // Offsets step by (L − T)/(n − 1) ≥ T, since n·T ≤ L: the windows never overlap.
            long offset = n == 1 ? 0 : (long)i * (train.Length - seq) / (n - 1);
            train.AsSpan((int)offset, seq).CopyTo(picked.AsSpan(i * seq, seq));
        }
        return picked;
    }

    IBackend Inference() => ComputeDevice.CreateBackend(s.Device, new ComputeDeviceOptions { Threads = s.Threads });

    IBackend Training() => ComputeDevice.CreateBackend(s.Device, new ComputeDeviceOptions { Threads = s.Threads, Training = true, Tf32 = s.Tf32 });

    /// <summary><c>e3 baseline</c>: drop-one-kl checkpoints after every greedy step and resumes from it.</summary>
    JsonObject Baseline(string stage, BaselineMethod method, int[] train, string trainFile, int keep, string maskPath, string checkpointFolder)
    {
        using var backend = Inference();
        using var model = DecoderModel.Load(s.Model, backend);
        var target = PruneTarget.FromKeep(model.Config.NumLayers, keep);
        var data = method.NeedsData() ? CalibrationSet.Sample(train, s.Sequence, s.Batch, s.CalibrationTokens, s.Seed, trainFile) : null;
        var clock = Stopwatch.StartNew();
        string? checkpoint = null;
        if (method == BaselineMethod.DropOneKl)
        {
            Directory.CreateDirectory(checkpointFolder);
            checkpoint = Path.Combine(checkpointFolder, GreedyKlCheckpoint.FileName);
        }
        var result = BaselinePruner.Run(model, method, target, data, s.Seed,
            new CallerThreadProgress<BaselineProgress>(p => Advance(stage, $"{p.Stage}: pass {p.Done}/{p.Total}", p.Done, p.Total)),
            checkpoint, resume: checkpoint != null && File.Exists(checkpoint));
        result.Mask.Save(maskPath);
        return ResultJson.Baseline(result, model.Config.NumLayers, maskPath, clock.Elapsed.TotalSeconds);
    }

    /// <summary><c>e3 teacher-cache</c> of the training tokens, in sequences of the run's length; resumed shard by shard.</summary>
    JsonObject TeacherCache(int[] train, string output)
    {
        using var backend = Inference();
        using var teacher = DecoderModel.Load(s.Model, backend);
        var build = TeacherCacheBuilder.Build(teacher, train, s.TeacherCacheK, s.Sequence, output,
            (done, total) => Advance("teacher-cache", $"{done}/{total} tokens", done, total));
        return ResultJson.TeacherCache(build, s.TeacherCacheK, teacher.Config.VocabSize);
    }

    /// <summary>
    /// <c>e3 search</c> with its defaults, calibrating on as many tokens as the baselines score layers on; its steps read
    /// <paramref name="cache"/> when given (its KL initialisation and final swaps run the model itself either way).
    /// </summary>
    JsonObject Search(ModelConfig config, int[] train, string trainFile, int keep, string maskPath, string checkpointFolder, string? cache)
    {
        using var backend = Training();
        using var reader = cache != null ? TeacherCacheReader.Open(cache) : null;
        MemoryFit.CheckSearch(s.Model, config, s.Sequence, s.Batch, s.ActivationCheckpointing, liveTeacher: true, backend,
            line => progress(new PruneProgress("search", PruneEvent.Warning, line)), shapeFixed: true);
        using var model = DecoderModel.Load(s.Model, backend);
        SearchBatches batches = reader != null
            ? new CachedTeacherBatches(reader, train, TeacherCacheHeader.ModelIdOf(s.Model), model.Config.VocabSize, s.Batch, s.Seed)
            : new LiveTeacherBatches(train, s.Sequence, s.Batch, s.Seed, trainFile);
        var options = new SearchOptions
        {
            Keep = keep,
            Steps = (s.SearchTokens + batches.TokensPerBatch - 1) / batches.TokensPerBatch,
            Samples = s.Samples,
            LearningRate = s.SearchLearningRate,
            Init = AlphaInit.Kl,
            InitBatches = (int)Math.Max(1, (s.CalibrationTokens + batches.TokensPerBatch - 1) / batches.TokensPerBatch),
            Seed = s.Seed,
            ActivationCheckpointing = s.ActivationCheckpointing,
        };
        using var search = new MaskSearch(model, batches, options, s.Threads > 0 ? s.Threads : -1);
        bool resumed = SearchCheckpoint.Exists(checkpointFolder);
        var state = resumed ? search.Resume(checkpointFolder) : search.Initialize();
        long startStep = state.Step;
        var clock = Stopwatch.StartNew();
        search.Run(state, checkpointFolder, SearchCheckpointEvery, p => progress(new PruneProgress("search", PruneEvent.Advanced,
            string.Create(CultureInfo.InvariantCulture, $"step {p.Step + 1}/{p.TotalSteps} k={p.Keep} τ={p.Tau:F3} loss={p.Loss:F5}"), p.Step + 1, p.TotalSteps)),
            cancel);
        double seconds = clock.Elapsed.TotalSeconds;
        var mask = search.Result(state);
        mask.Save(maskPath);
        searchFinished?.Invoke(state, mask);
        string? plot = File.Exists(Sub("search.png")) ? Sub("search.png") : null;
        return ResultJson.Search(search, state, mask, maskPath, plot, model.Config.NumLayers, startStep, resumed, batches.TokensPerBatch, seconds);
    }

    /// <summary><c>e3 compare</c>: the teacher, the masks and the students on the held-out windows.</summary>
    JsonObject Compare(string stage, IReadOnlyList<string> maskPaths, IReadOnlyList<string> students, int[] heldout, string? output)
    {
        using var backend = Inference();
        using var teacher = DecoderModel.Load(s.Model, backend);
        var masks = ModelComparison.LoadMasks(maskPaths, teacher.Config);
        var rows = ModelComparison.Run(teacher, masks, students, heldout, EvalWindow, s.EvalTokens > 0 ? s.EvalTokens : long.MaxValue,
            (done, total) => Advance(stage, $"window {done}/{total}", done, total));
        if (output != null) AtomicFile.WriteAllText(output, ComparisonTable.Markdown(rows));
        return new JsonObject { ["teacher"] = s.Model, ["rows"] = ComparisonTable.Json(rows) };
    }

    /// <summary><c>e3 distill</c> of the teacher under a mask, from the live teacher or <paramref name="cache"/>, into its own work folder.</summary>
    JsonObject Distill(string stage, string maskPath, string trainFile, string output, string checkpointFolder, string? cache)
    {
        var request = new DistillationRequest
        {
            Teacher = s.Model, Mask = maskPath, Data = trainFile, Output = output, TeacherCache = cache,
            ReplaceOutput = true, // the stage's own work folder, rewritten when a resumed run repeats the stage
            Settings = new TrainingSettings { Tokens = s.DistillTokens, Sequence = s.Sequence, Batch = s.Batch, LearningRate = s.DistillLearningRate, Seed = s.Seed },
            CheckpointFolder = checkpointFolder, Resume = new TrainingCheckpoint(checkpointFolder).Exists, ActivationCheckpointing = s.ActivationCheckpointing,
        };
        Distiller.Check(request);
        using var backend = Training();
        var outcome = Distiller.Run(backend, request, p => progress(new PruneProgress(stage, PruneEvent.Advanced,
            string.Create(CultureInfo.InvariantCulture, $"step {p.Step}/{p.TotalSteps} loss {p.Loss:F4} {p.TokensPerSecond:F0} tok/s"), p.Step, p.TotalSteps)),
            cancel, setup => MemoryFit.CheckDistill(setup, request, backend, line => progress(new PruneProgress(stage, PruneEvent.Warning, line)), canFreeze: false, shapeFixed: true));
        return ResultJson.Training("distill", outcome, output);
    }

    /// <summary><c>e3 export</c>: the healed model without the mask's dropped layers, renumbered.</summary>
    JsonObject Export(string stage, string model, string maskPath, string output)
    {
        var exporter = new CheckpointExporter
        {
            Progress = (done, total, _) => Advance(stage, $"tensor {done}/{total}", done, total),
        };
        return ResultJson.Export(exporter.Export(model, maskPath, output, overwrite: true));
    }

    /// <summary><c>e3 bench speedup</c>: the full and the pruned teacher alternate in one process, batch 1.</summary>
    JsonObject Speedup(MaskFile learned)
    {
        using var backend = Inference();
        using var model = DecoderModel.Load(s.Model, backend);
        var result = SpeedupBenchmark.Run(model, learned.ToLayerMask(), batch: 1, s.BenchPrefill, s.BenchDecode, s.BenchRepeats,
            progress: line => progress(new PruneProgress("speedup", PruneEvent.Advanced, line)));
        return BenchEnvironment.Wrap(ResultJson.SpeedupSchema, ResultJson.Speedup(result), BenchEnvironment.GpuOf(backend));
    }

    /// <summary>Reports progress inside a stage, and stops it there when the run is cancelled.</summary>
    void Advance(string stage, string message, long done, long total)
    {
        cancel.ThrowIfCancellationRequested();
        progress(new PruneProgress(stage, PruneEvent.Advanced, message, done, total));
    }

    internal sealed record Row(string Name, string Method, int Layers, int[]? Dropped, double Perplexity, double Kl, double Top1);

    static List<Row> Rows(JsonObject compare) => (compare["rows"] as JsonArray ?? []).Select(n => n!.AsObject()).Select(o => new Row(
        o["name"]!.GetValue<string>(), o["method"]!.GetValue<string>(), o["layers"]!.GetValue<int>(),
        o["dropped"] is JsonArray d ? d.Select(x => x!.GetValue<int>()).ToArray() : null,
        o["perplexity"]!.GetValue<double>(), o["kl"]!.GetValue<double>(), o["top1_agreement"]!.GetValue<double>())).ToList();
}
