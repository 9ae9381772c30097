using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using E3.Pruning.Distill;
using E3.Interop.Kernels;
using E3.Backends;
using E3.Model.IO;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Training;
using E3.Pruning.Distillation;
using E3.Pruning.Masking;
using E3.Pruning.Reports;
using E3.Pruning.Search;
using E3.Pruning.TeacherCache;
using Spectre.Console;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 search</c>: the learned Gumbel-TopK layer mask (<see cref="MaskSearch"/>). Writes mask.json and a PNG of
/// every layer's keep probability and the loss; checkpoints every --checkpoint-every steps and resumes with --resume.
/// </summary>
public static class SearchCommand
{
    /// <summary>The command, for the root of the <c>e3</c> command tree.</summary>
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = new Option<string>("--data") { Description = "Text (model tokenizer) or token ids (.bin/.npy)", Required = true };
        var prune = new Option<double?>("--prune") { Description = "Fraction of layers to drop, in (0, 1): k = L − round(prune·L)" };
        var keep = new Option<int?>("--keep") { Description = "Layers to keep (k); instead of --prune" };
        var tokens = new Option<long>("--tokens") { Description = "Training tokens; steps = ceil(tokens / (batch·seq))", DefaultValueFactory = _ => 65_536 };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence (T); a teacher cache fixes it to its own", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step (B)", DefaultValueFactory = _ => 4 };
        var samples = new Option<int>("--samples") { Description = "Gumbel-TopK masks per step (S)", DefaultValueFactory = _ => 4 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate on α", DefaultValueFactory = _ => 0.05 };
        var tau0 = new Option<double>("--tau0") { Description = "Initial Gumbel temperature", DefaultValueFactory = _ => 1.0 };
        var tauMin = new Option<double>("--tau-min") { Description = "Gumbel temperature of the last step (annealed to from --tau0)", DefaultValueFactory = _ => 0.1 };
        var tauSchedule = new Option<string>("--tau-schedule") { Description = "exponential, linear or cosine", DefaultValueFactory = _ => "exponential" };
        var curriculumSteps = new Option<long?>("--curriculum-steps") { Description = "Steps of the keep-count ramp (default: half the steps)" };
        var warmupKeep = new Option<int?>("--warmup-keep") { Description = "Layers kept at step 0 (default: halfway between L and k)" };
        var init = new Option<string>("--init") { Description = "α start: kl (drop-one-layer KL importance) or uniform", DefaultValueFactory = _ => "kl" };
        var initBatches = new Option<int>("--init-batches") { Description = "Calibration batches for --init kl and the final refinement", DefaultValueFactory = _ => 2 };
        var refineSwaps = new Option<int>("--refine-swaps") { Description = "Final mask: also score the r×r swaps at the keep boundary by calibration KL (0 = plain top-k of alpha)", DefaultValueFactory = _ => 3 };
        var kdWeight = new Option<string>("--kd-weight") { Description = "Token weights of the KD loss: linear, softmax or none", DefaultValueFactory = _ => "linear" };
        var seed = new Option<ulong>("--seed") { Description = "Seeds data order and Gumbel noise", DefaultValueFactory = _ => 0 };
        var teacherCache = new Option<string?>("--teacher-cache") { Description = "Sparse top-K teacher (e3 teacher-cache) instead of the live full model" };
        var checkpoint = CommonOptions.OutputFolder(new Option<string?>("--checkpoint") { Description = "Checkpoint folder" });
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "Steps between checkpoints", DefaultValueFactory = _ => 50 };
        var resume = new Option<bool>("--resume") { Description = "Continue from --checkpoint" };
        var output = CommonOptions.OutputFile(new Option<string>("--out") { Description = "mask.json to write", Required = true });
        var plot = new Option<string?>("--plot") { Description = "PNG of keep probabilities and loss (default: --out with .png)" };
        var recompute = CommonOptions.ActivationCheckpointing();
        var device = CommonOptions.Device();
        var tf32 = CommonOptions.Tf32();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("search", "Learn which layers to drop: Gumbel-TopK mask logits trained by entropy-weighted distillation from the full model")
        {
            model, data, prune, keep, tokens, seq, batch, samples, lr, tau0, tauMin, tauSchedule, curriculumSteps, warmupKeep, init,
            initBatches, refineSwaps, kdWeight, seed, teacherCache, checkpoint, checkpointEvery, resume, output, plot, recompute, device, tf32, threads, json,
        };
        cmd.Validators.Add(r =>
        {
            bool hasPrune = r.GetValue(prune) != null, hasKeep = r.GetValue(keep) != null;
            if (hasPrune == hasKeep) r.AddError("give exactly one of --prune and --keep");
            if (r.GetValue(resume) && r.GetValue(checkpoint) == null) r.AddError("--resume needs --checkpoint DIR");
        });
        cmd.SetAction(p => CliRunner.Guard(() => Interruption.Run(cancel => Run(new Request(
            p.GetValue(model)!, p.GetValue(data)!, p.GetValue(prune), p.GetValue(keep), p.GetValue(tokens), p.GetValue(seq), p.GetValue(batch),
            p.GetValue(samples), p.GetValue(lr), p.GetValue(tau0), p.GetValue(tauMin), p.GetValue(tauSchedule)!, p.GetValue(curriculumSteps),
            p.GetValue(warmupKeep), p.GetValue(init)!, p.GetValue(initBatches), p.GetValue(refineSwaps), p.GetValue(kdWeight)!, p.GetValue(seed), p.GetValue(teacherCache),
            p.GetValue(checkpoint), p.GetValue(checkpointEvery), p.GetValue(resume), p.GetValue(output)!, p.GetValue(plot), p.GetValue(recompute),
            p.GetValue(device)!, p.GetValue(tf32), p.GetValue(threads), p.GetValue(json)), cancel))));
        return cmd;
    }

    private sealed record Request(string Model, string Data, double? Prune, int? Keep, long Tokens, int Seq, int Batch, int Samples, double Lr,
        double Tau0, double TauMin, string TauSchedule, long? CurriculumSteps, int? WarmupKeep, string Init, int InitBatches, int RefineSwaps, string KdWeight,
        ulong Seed, string? TeacherCache, string? Checkpoint, int CheckpointEvery, bool Resume, string Output, string? Plot, bool ActivationCheckpointing,
        string Device, bool Tf32, int Threads, bool Json);

    private static int Run(Request r, CancellationToken cancel)
    {
        if (r.Seq < 2) throw new UsageException($"--seq: {r.Seq} must be at least 2");
        if (r.Batch < 1) throw new UsageException($"--batch: {r.Batch} must be at least 1");
        if (r.Tokens < 1) throw new UsageException($"--tokens: {r.Tokens} must be at least 1");
        if (r.CheckpointEvery < 1) throw new UsageException($"--checkpoint-every: {r.CheckpointEvery} must be at least 1");
        if (r.Checkpoint != null && !r.Resume && SearchCheckpoint.Exists(r.Checkpoint))
            throw new ArgumentException($"--checkpoint: {r.Checkpoint} already holds a search checkpoint; pass --resume to continue it or choose an empty folder");
        using var backend = CliRunner.CreateTrainingBackend(r.Device, r.Threads, r.Tf32);
        using var cache = r.TeacherCache is { } cachePath ? TeacherCacheReader.Open(cachePath) : null;
        var planned = ModelConfig.Load(r.Model);
        // The search's live teacher is the model itself, which the KL initialisation and the final swaps run even when
        // the steps read a teacher cache.
        MemoryFit.CheckSearch(r.Model, planned, cache?.Header.SequenceLength ?? r.Seq, r.Batch, r.ActivationCheckpointing,
            liveTeacher: cache == null || r.Init == "kl" || r.RefineSwaps > 0, backend, CliRunner.Warning(Console.Error));
        using var decoder = DecoderModel.Load(r.Model, backend);
        var config = decoder.Config;
        int layers = config.NumLayers;
        int keep = r.Keep ?? KeepFromPrune(r.Prune!.Value, layers);
        int[] ids = DataTokens.Read(r.Data, r.Model, config.VocabSize);

        SearchBatches batches = cache != null
            ? new CachedTeacherBatches(cache, ids, TeacherCacheHeader.ModelIdOf(r.Model), config.VocabSize, r.Batch, r.Seed)
            : new LiveTeacherBatches(ids, r.Seq, r.Batch, r.Seed, r.Data);
        var options = new SearchOptions
        {
            Keep = keep,
            WarmupKeep = r.WarmupKeep,
            Steps = (r.Tokens + batches.TokensPerBatch - 1) / batches.TokensPerBatch,
            CurriculumSteps = r.CurriculumSteps,
            Samples = r.Samples,
            LearningRate = r.Lr,
            Tau0 = r.Tau0,
            TauMin = r.TauMin,
            TauSchedule = ParseSchedule(r.TauSchedule),
            Init = r.Init switch { "kl" => AlphaInit.Kl, "uniform" => AlphaInit.Uniform, _ => throw new UsageException($"--init: '{r.Init}' is not kl or uniform") },
            InitBatches = r.InitBatches,
            RefineSwaps = r.RefineSwaps,
            Seed = r.Seed,
            Kd = new KdOptions { Weighting = ParseWeighting(r.KdWeight) },
            Relaxation = GumbelRelaxation.SoftTopK,
            ActivationCheckpointing = r.ActivationCheckpointing,
        };
        using var search = new MaskSearch(decoder, batches, options, r.Threads > 0 ? r.Threads : -1);
        var state = r.Resume ? search.Resume(r.Checkpoint!) : search.Initialize();
        long startStep = state.Step;
        var clock = Stopwatch.StartNew();
        RunWithProgress(search, state, r, batches.TokensPerBatch, startStep, clock, cancel);
        double seconds = clock.Elapsed.TotalSeconds;

        var mask = search.Result(state);
        string plotPath = r.Plot ?? Path.ChangeExtension(r.Output, ".png");
        SearchPlot.Write(state, mask.Kept.ToHashSet(), plotPath);
        mask.Save(r.Output);
        if (r.Json)
            CliRunner.WriteJson(ResultJson.Search(search, state, mask, r.Output, plotPath, layers, startStep, r.Resume, batches.TokensPerBatch, seconds));
        else
            Console.Out.WriteLine($"kept [{string.Join(",", mask.Kept)}], dropped [{string.Join(",", mask.Dropped)}] of {layers} layers; wrote {r.Output} and {plotPath}");
        return ExitCodes.Ok;
    }

    // Spectre's live bar on a terminal; otherwise (or with --json) plain lines on stderr, at most one a second.
    private static void RunWithProgress(MaskSearch search, SearchState state, Request r, int tokensPerBatch, long startStep, Stopwatch clock, CancellationToken cancel)
    {
        string Describe(SearchProgress p)
        {
            double elapsed = Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            long done = p.Step + 1 - startStep;
            double stepsPerSecond = done / elapsed;
            var eta = TimeSpan.FromSeconds((p.TotalSteps - p.Step - 1) / Math.Max(1e-9, stepsPerSecond));
            var top = new float[p.Alpha.Count];
            DeterministicMask.TopK(p.Alpha.ToArray(), search.Options.Keep, top);
            string mask = string.Concat(top.Select(m => m == 1f ? '1' : '0'));
            return $"step {p.Step + 1}/{p.TotalSteps} k={p.Keep} τ={p.Tau:F3} loss={p.Loss:F5} {done * tokensPerBatch / elapsed:F0} tok/s mask={mask} eta {eta:hh\\:mm\\:ss}";
        }
        string? checkpoint = r.Checkpoint;
        if (r.Json || Console.IsErrorRedirected)
        {
            TimeSpan? last = null;
            search.Run(state, checkpoint, r.CheckpointEvery, cancel: cancel, progress: p =>
            {
                if (last is { } t && clock.Elapsed - t < TimeSpan.FromSeconds(1) && p.Step + 1 < p.TotalSteps) return;
                last = clock.Elapsed;
                Console.Error.WriteLine($"search: {Describe(p)}");
            });
            return;
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("search", maxValue: search.Options.Steps);
                task.Value = state.Step;
                search.Run(state, checkpoint, r.CheckpointEvery, cancel: cancel, progress: p =>
                {
                    task.Value = p.Step + 1;
                    task.Description = Markup.Escape(Describe(p));
                });
            });
    }

    private static int KeepFromPrune(double prune, int layers)
    {
        if (!(prune > 0 && prune < 1)) throw new UsageException($"--prune: {prune} must lie in (0, 1)");
        int drop = (int)Math.Round(prune * layers, MidpointRounding.AwayFromZero);
        if (drop < 1 || drop >= layers) throw new ArgumentException($"--prune: {prune} of {layers} layers drops {drop}; it must drop 1..{layers - 1}");
        return layers - drop;
    }

    private static AnnealKind ParseSchedule(string s) => s switch
    {
        "exponential" or "exp" => AnnealKind.Exponential,
        "linear" => AnnealKind.Linear,
        "cosine" => AnnealKind.Cosine,
        _ => throw new UsageException($"--tau-schedule: '{s}' is not exponential, linear or cosine"),
    };

    private static EntropyWeighting ParseWeighting(string s) => s switch
    {
        "linear" => EntropyWeighting.Linear,
        "softmax" => EntropyWeighting.Softmax,
        "none" => EntropyWeighting.None,
        _ => throw new UsageException($"--kd-weight: '{s}' is not linear, softmax or none"),
    };
}
