using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using E3.Model.IO;
using E3.Model.Decoder;
using E3.Pruning.Baselines;
using E3.Pruning.Reports;
using Spectre.Console;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 baseline</c>: chooses layers to drop with one of the published baselines (bi, angular, last, random,
/// drop-one-kl) and writes mask.json, the same format <c>e3 search</c> writes. The mask is written only when the run
/// has finished (temp file, then rename). bi and angular are one pass over the calibration tokens; drop-one-kl takes
/// about n·L passes, so it checkpoints after every greedy step (--checkpoint DIR) and continues with --resume.
/// </summary>
internal static class BaselineCommand
{
    public static Command Create()
    {
        var method = new Option<string>("--method") { Description = $"One of {string.Join(", ", BaselineMethods.Names)}", Required = true };
        var model = CommonOptions.Model();
        var data = new Option<string?>("--data") { Description = "Calibration text (the model's tokenizer) or token ids (.bin uint32 / .npy); not needed by last and random" };
        var prune = new Option<double?>("--prune") { Description = "Fraction of layers to drop, e.g. 0.25 (round(ratio·L) layers)" };
        var keep = new Option<int?>("--keep") { Description = "Layers to keep (instead of --prune)" };
        var tokens = new Option<long>("--tokens") { Description = "Calibration tokens (rounded up to whole batches)", DefaultValueFactory = _ => 4096 };
        var seq = new Option<int>("--seq") { Description = "Tokens per calibration window (T)", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "Windows per forward pass (B)", DefaultValueFactory = _ => 4 };
        var seed = new Option<ulong>("--seed") { Description = "Selects the calibration windows, and the layers for random", DefaultValueFactory = _ => 0 };
        var output = CommonOptions.OutputFile(new Option<string>("--out") { Description = "mask.json to write", Required = true });
        var checkpoint = CommonOptions.OutputFolder(new Option<string?>("--checkpoint") { Description = $"drop-one-kl: folder for {GreedyKlCheckpoint.FileName}, rewritten after every greedy step" });
        var resume = new Option<bool>("--resume") { Description = "drop-one-kl: continue from the checkpoint in --checkpoint when there is one" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("baseline", "Choose layers to drop with a baseline method (ShortGPT BI, angular distance, last, random, greedy drop-one KL)")
        {
            method, model, data, prune, keep, tokens, seq, batch, seed, output, checkpoint, resume, device, threads, json,
        };
        cmd.SetAction(p => CliRunner.Guard(() => Run(new Request(CliRunner.ParseOption(() => BaselineMethods.Parse(p.GetValue(method)!)), p.GetValue(model)!, p.GetValue(data),
            p.GetValue(prune), p.GetValue(keep), p.GetValue(tokens), p.GetValue(seq), p.GetValue(batch), p.GetValue(seed), p.GetValue(output)!,
            p.GetValue(checkpoint), p.GetValue(resume), p.GetValue(device)!, p.GetValue(threads), p.GetValue(json)))));
        return cmd;
    }

    sealed record Request(BaselineMethod Method, string Model, string? Data, double? Prune, int? Keep, long Tokens, int Seq, int Batch,
        ulong Seed, string Output, string? Checkpoint, bool Resume, string Device, int Threads, bool Json);

    static int Run(Request r)
    {
        if (r.Prune.HasValue == r.Keep.HasValue) throw new UsageException("give exactly one of --prune and --keep");
        if (r.Seq < 2) throw new UsageException($"--seq: {r.Seq} must be at least 2");
        if (r.Batch < 1) throw new UsageException($"--batch: {r.Batch} must be at least 1");
        if (r.Method.NeedsData() && r.Data == null) throw new UsageException($"--data is required by --method {r.Method.Name()}");
        if (r.Resume && r.Checkpoint == null) throw new UsageException("--resume needs --checkpoint DIR");
        string? checkpointFile = null;
        if (r.Checkpoint != null && r.Method == BaselineMethod.DropOneKl)
        {
            Directory.CreateDirectory(r.Checkpoint);
            checkpointFile = Path.Combine(r.Checkpoint, GreedyKlCheckpoint.FileName);
        }
        using var backend = CliRunner.CreateBackend(r.Device, r.Threads);
        using var model = DecoderModel.Load(r.Model, backend);
        var config = model.Config;
        var target = r.Prune is { } ratio ? PruneTarget.FromRatio(config.NumLayers, ratio) : PruneTarget.FromKeep(config.NumLayers, r.Keep!.Value);
        CalibrationSet? data = null;
        if (r.Method.NeedsData())
        {
            int[] stream = DataTokens.Read(r.Data!, r.Model, config.VocabSize);
            data = CalibrationSet.Sample(stream, r.Seq, r.Batch, r.Tokens, r.Seed, r.Data!);
        }

        var clock = Stopwatch.StartNew();
        var result = WithProgress(r.Json, data, progress => BaselinePruner.Run(model, r.Method, target, data, r.Seed, progress, checkpointFile, r.Resume));
        result.Mask.Save(r.Output);
        double seconds = clock.Elapsed.TotalSeconds;

        if (r.Json)
            CliRunner.WriteJson(ResultJson.Baseline(result, config.NumLayers, r.Output, seconds));
        else
            Console.Out.WriteLine($"{result.Mask.Method}: drop [{string.Join(",", result.Mask.Dropped)}], keep {result.Mask.Keep}/{config.NumLayers}; wrote {r.Output} ({seconds:F1} s)");
        return ExitCodes.Ok;
    }

    // Progress goes to stderr: a live bar on a terminal, a plain line per second (and per stage) when redirected.
    static BaselineResult WithProgress(bool quiet, CalibrationSet? data, Func<IProgress<BaselineProgress>?, BaselineResult> body)
    {
        if (quiet || data == null) return body(null);
        long tokensPerPass = data.Batch * data.SequenceLength;
        var clock = Stopwatch.StartNew();
        string Describe(BaselineProgress p) =>
            $"{p.Stage}: pass {p.Done}/{p.Total}, {p.Done * tokensPerPass / Math.Max(1e-9, clock.Elapsed.TotalSeconds):F0} tokens/s";
        if (Console.IsErrorRedirected)
        {
            var last = TimeSpan.Zero;
            string? stage = null;
            return body(new CallerThreadProgress<BaselineProgress>(p =>
            {
                if (p.Stage == stage && p.Done != p.Total && clock.Elapsed - last < TimeSpan.FromSeconds(1)) return;
                stage = p.Stage;
                last = clock.Elapsed;
                Console.Error.WriteLine(Describe(p));
            }));
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        BaselineResult? result = null;
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("baseline", maxValue: 1);
                result = body(new CallerThreadProgress<BaselineProgress>(p =>
                {
                    task.MaxValue = p.Total;
                    task.Value = p.Done;
                    task.Description = Describe(p);
                }));
            });
        return result!;
    }
}
