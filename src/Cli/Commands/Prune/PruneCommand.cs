using System.CommandLine;
using E3.Model;
using E3.Pruning.Pipeline;

namespace E3.Cli.Commands.Prune;

/// <summary>
/// <c>e3 prune</c>: E3's main job in one command — search, baselines, distillation, export, evaluation and the speedup,
/// with report.md, report.json and the search plot in the output folder.
/// </summary>
internal static class PruneCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = new Option<string>("--data") { Description = "Training text (model tokenizer) or token ids (.bin/.npy)", Required = true };
        var evalData = new Option<string?>("--eval-data") { Description = "Held-out evaluation text; default: the last --holdout of --data" };
        var holdout = new Option<double>("--holdout") { Description = "Fraction of --data held out when --eval-data is not given", DefaultValueFactory = _ => 0.1 };
        var prune = new Option<double?>("--prune") { Description = "Fraction of layers to drop (e.g. 0.25)" };
        var keep = new Option<int?>("--keep") { Description = "Layers to keep (instead of --prune)" };
        var output = CommonOptions.OutputFolder(new Option<string>("--out") { Description = "Output folder: masks, checkpoints, healed model, report.md", Required = true });
        var baselines = new Option<string[]>("--baselines") { Description = "Baselines to run (bi angular last random drop-one-kl)", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["bi", "angular", "last", "random", "drop-one-kl"] };
        var calib = new Option<long>("--calibration-tokens") { Description = "Tokens the baselines score layers on", DefaultValueFactory = _ => 2048 };
        var searchTokens = new Option<long>("--search-tokens") { Description = "Tokens the mask search trains on", DefaultValueFactory = _ => 16384 };
        var distillTokens = new Option<long>("--distill-tokens") { Description = "Tokens each distillation trains on", DefaultValueFactory = _ => 40960 };
        var evalTokens = new Option<long>("--eval-tokens") { Description = "Held-out tokens scored per model (whole windows of 256, so at least this many; 0 = all)", DefaultValueFactory = _ => 16384 };
        var seq = new Option<int>("--seq") { Description = "Tokens per training sequence", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 4 };
        var samples = new Option<int>("--samples") { Description = "Gumbel-TopK masks sampled per search step", DefaultValueFactory = _ => 4 };
        var searchLr = new Option<double>("--search-lr") { Description = "AdamW learning rate of the mask logits", DefaultValueFactory = _ => 0.05 };
        var distillLr = new Option<double>("--distill-lr") { Description = "Peak AdamW learning rate of the distillation", DefaultValueFactory = _ => 1e-3 };
        var teacherCacheK = new Option<int>("--teacher-cache-k") { Description = "Search and distil from a top-K teacher cache (the paper's offline teacher, ~10 logits a token, at most 64) of training sequences for the budgets, built once in --out, instead of running the teacher at every step; 0 runs it live", DefaultValueFactory = _ => 0 };
        var noBaselineDistill = new Option<bool>("--no-baseline-distill") { Description = "Heal only E3's mask (by default the best baseline is healed too, for a fair comparison)" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of data windows, Gumbel noise and the random baseline", DefaultValueFactory = _ => 0 };
        var prefill = new Option<int>("--bench-prefill") { Description = "Speedup bench: prompt tokens", DefaultValueFactory = _ => 128 };
        var decode = new Option<int>("--bench-decode") { Description = "Speedup bench: generated tokens", DefaultValueFactory = _ => 32 };
        var repeats = new Option<int>("--bench-repeats") { Description = "Speedup bench: timed repeats (median)", DefaultValueFactory = _ => 5 };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --out from its first unfinished stage" };
        var recompute = CommonOptions.ActivationCheckpointing("Search and distillation");
        var device = CommonOptions.Device();
        var tf32 = CommonOptions.Tf32();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("prune", "Learn which layers to drop, heal the pruned model by distillation, export it, and report quality against baselines and the speedup")
        {
            model, data, evalData, holdout, prune, keep, output, baselines, calib, searchTokens, distillTokens, evalTokens, seq, batch, samples,
            searchLr, distillLr, teacherCacheK, noBaselineDistill, seed, prefill, decode, repeats, resume, recompute, device, tf32, threads, json,
        };
        cmd.Validators.Add(r =>
        {
            if ((r.GetResult(prune) == null) == (r.GetResult(keep) == null)) r.AddError("give exactly one of --prune RATIO and --keep K");
        });
        cmd.SetAction(p => CliRunner.Guard(() => Interruption.Run(cancel =>
        {
            // Refused here, not by the search stage after every baseline has run.
            if (p.GetValue(tf32)) CliRunner.RequireTensorCores(p.GetValue(device)!);
            var request = new PruneRequest
            {
                Model = p.GetValue(model)!, Data = p.GetValue(data)!, EvalData = p.GetValue(evalData), Holdout = p.GetValue(holdout),
                Prune = p.GetValue(prune), Keep = p.GetValue(keep), Output = p.GetValue(output)!, Baselines = p.GetValue(baselines)!,
                CalibrationTokens = p.GetValue(calib), SearchTokens = p.GetValue(searchTokens), DistillTokens = p.GetValue(distillTokens),
                EvalTokens = p.GetValue(evalTokens), Sequence = p.GetValue(seq), Batch = p.GetValue(batch), Samples = p.GetValue(samples),
                SearchLearningRate = p.GetValue(searchLr), DistillLearningRate = p.GetValue(distillLr), DistillBestBaseline = !p.GetValue(noBaselineDistill), TeacherCacheK = p.GetValue(teacherCacheK),
                Seed = p.GetValue(seed), BenchPrefill = p.GetValue(prefill), BenchDecode = p.GetValue(decode), BenchRepeats = p.GetValue(repeats),
                Device = p.GetValue(device)!, Threads = p.GetValue(threads), Resume = p.GetValue(resume),
                ActivationCheckpointing = p.GetValue(recompute), Tf32 = p.GetValue(tf32),
            };
            // Every option checked against the model before any stage runs: a value out of range is a usage error.
            CliRunner.ParseOption(() => { request.Validate(); return 0; });
            var config = ModelConfig.Load(request.Model);
            CliRunner.ParseOption(() => request.KeepOf(config));
            string plot = Path.Combine(request.Output, "search.png");
            var outcome = PruneConsole.Run(progress => Pruner.Run(request, progress, (state, mask) => SearchPlot.Write(state, mask.Kept.ToHashSet(), plot), cancel));
            if (p.GetValue(json)) Console.Out.Write(File.ReadAllText(outcome.ReportJson) + Environment.NewLine);
            else Console.Out.Write(File.ReadAllText(outcome.ReportMarkdown));
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
