using E3.Interop.IO;
using System.Globalization;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;
using E3.Pruning.Distill;
using E3.Pruning.Search;

namespace E3.Cli.Commands.Prune;

/// <summary>
/// <c>e3 prune</c>: split the data, run every baseline and the learned search, compare the masks on held-out text,
/// heal E3's mask (and the best baseline's) by distillation, export the healed pruned checkpoints, compare again, and
/// measure the speedup; then write report.md and report.json. Each stage is the e3 command of the same name; the
/// output folder is the pipeline's checkpoint, and <c>--resume</c> continues from the first unfinished stage.
/// </summary>
internal sealed class PrunePipeline(PruneSettings s, Action<string> log)
{
    readonly string _out = Path.GetFullPath(s.Output);

    string Sub(params string[] parts) => Path.Combine([_out, .. parts]);

    public JsonObject Run()
    {
        var config = ModelConfig.Load(s.Model);
        int layers = config.NumLayers;
        int keep = s.Keep ?? layers - (int)Math.Round(s.Prune!.Value * layers, MidpointRounding.AwayFromZero);
        if (keep < 1 || keep >= layers)
            throw new ArgumentException(s.Keep != null
                ? $"--keep: {keep} must lie in 1..{layers - 1} for a model with {layers} layers"
                : $"--prune: {s.Prune} keeps {keep} of {layers} layers; it must drop at least one and keep at least one");
        if (!(s.Holdout is > 0 and < 1)) throw new UsageException($"--holdout: {s.Holdout} must lie in (0, 1)");
        foreach (var m in s.Baselines)
            if (m is not ("bi" or "angular" or "last" or "random" or "drop-one-kl"))
                throw new UsageException($"--baselines: '{m}' is not a baseline (bi, angular, last, random, drop-one-kl)");
        var (train, heldout) = SplitData(config);
        if (Directory.Exists(_out) && Directory.EnumerateFileSystemEntries(_out).Any() && !s.Resume)
            throw new ArgumentException($"--out: {_out} already exists and is not empty; pass --resume to continue that run, or choose another folder");
        Directory.CreateDirectory(_out);
        var stages = new StageRunner(_out, s.Resume, log);
        string trainFile = Sub("data", "train.bin"), heldoutFile = Sub("data", "heldout.bin");
        if (!File.Exists(trainFile) || !File.Exists(heldoutFile) || !s.Resume)
        {
            Directory.CreateDirectory(Sub("data"));
            TokenFile.WriteBin(trainFile, train);
            TokenFile.WriteBin(heldoutFile, heldout);
        }
        string k = keep.ToString(CultureInfo.InvariantCulture);
        string[] common = ["--device", s.Device, "--threads", I(s.Threads)];
        string[] windows = ["--seq", I(s.Sequence), "--batch", I(s.Batch), "--seed", s.Seed.ToString(CultureInfo.InvariantCulture)];
        // Flags of the stages that train (search, distill).
        string[] trainingFlags = [.. s.ActivationCheckpointing ? ["--activation-checkpointing"] : Array.Empty<string>(), .. s.Tf32 ? ["--tf32"] : Array.Empty<string>()];

        var masks = new Dictionary<string, string>();
        foreach (var method in s.Baselines)
        {
            string mask = Sub("masks", method + ".json");
            string ckpt = Sub("checkpoints", "baseline-" + method);
            Directory.CreateDirectory(Sub("masks"));
            stages.Run("baseline-" + method, ["baseline", "--method", method, "--model", s.Model, "--data", trainFile, "--keep", k,
                "--tokens", L(s.CalibrationTokens), .. windows, .. Checkpointed(ckpt, Directory.Exists(ckpt) && Directory.EnumerateFiles(ckpt).Any()),
                .. common, "--out", mask]);
            masks[method] = mask;
        }

        string e3Mask = Sub("masks", "e3.json"), searchCkpt = Sub("checkpoints", "search");
        var search = stages.Run("search", ["search", "--model", s.Model, "--data", trainFile, "--keep", k, "--tokens", L(s.SearchTokens), .. windows,
            "--samples", I(s.Samples), "--lr", D(s.SearchLearningRate), "--init-batches", I(CalibrationBatches), .. Checkpointed(searchCkpt, SearchCheckpoint.Exists(searchCkpt)),
            "--plot", Sub("search.png"), .. trainingFlags, .. common, "--out", e3Mask]);
        masks["e3"] = e3Mask;

        string evalLimit = L(s.EvalTokens);
        var before = stages.Run("compare-masks", ["compare", "--teacher", s.Model, "--data", heldoutFile, "--masks", .. masks.Values,
            "--max-tokens", evalLimit, .. common, "--out", Sub("comparison-masks.md")]);
        var rows = Rows(before);
        string? bestBaseline = s.DistillBestBaseline
            ? rows.Where(r => r.Method is not ("e3" or "full")).OrderBy(r => r.Kl).Select(r => Path.GetFileNameWithoutExtension(r.Name)).FirstOrDefault()
            : null;

        var healed = new List<(string Method, string Folder)>();
        foreach (var method in bestBaseline == null ? ["e3"] : new[] { "e3", bestBaseline })
        {
            string distilled = Sub("work", "distilled-" + method), ckpt = Sub("checkpoints", "distill-" + method);
            stages.Run("distill-" + method, ["distill", "--teacher", s.Model, "--mask", masks[method], "--data", trainFile,
                "--tokens", L(s.DistillTokens), .. windows, "--lr", D(s.DistillLearningRate),
                .. Checkpointed(ckpt, new TrainingCheckpoint(ckpt).Exists), .. trainingFlags, .. common, "--out", distilled, "--force"]); // its own work folder, rewritten on a resumed stage
            string exported = Sub("model-" + method);
            stages.Run("export-" + method, ["export", "--model", distilled, "--mask", masks[method], "--out", exported, "--force"]);
            healed.Add((method, exported));
        }

        var after = stages.Run("compare-healed", ["compare", "--teacher", s.Model, "--data", heldoutFile,
            "--student", .. healed.Select(h => h.Folder), "--max-tokens", evalLimit, .. common]);
        var learned = E3.Pruning.Masks.MaskFile.Load(e3Mask);
        var speed = stages.Run("speedup", ["bench", "speedup", "--model", s.Model, "--drop", string.Join(',', learned.Dropped),
            "--prefill", I(s.BenchPrefill), "--decode", I(s.BenchDecode), "--repeats", I(s.BenchRepeats), .. common]);

        var report = PruneReport.Build(s, config, learned, rows, Rows(after), healed, search, speed);
        AtomicFile.WriteAllText(Sub("report.json"), report.Json.ToJsonString(new() { WriteIndented = true }));
        AtomicFile.WriteAllText(Sub("report.md"), report.Markdown);
        return report.Json;
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

    /// <summary>The search calibrates (drop-one KL init, final refinement) on as many tokens as the baselines score layers on.</summary>
    int CalibrationBatches => (int)Math.Max(1, (s.CalibrationTokens + s.Sequence * s.Batch - 1) / (s.Sequence * s.Batch));

    static string[] Checkpointed(string folder, bool exists) => exists ? ["--checkpoint", folder, "--resume"] : ["--checkpoint", folder];

    internal sealed record Row(string Name, string Method, int Layers, int[]? Dropped, double Perplexity, double Kl, double Top1);

    static List<Row> Rows(JsonObject compare) => (compare["rows"] as JsonArray ?? []).Select(n => n!.AsObject()).Select(o => new Row(
        o["name"]!.GetValue<string>(), o["method"]!.GetValue<string>(), o["layers"]!.GetValue<int>(),
        o["dropped"] is JsonArray d ? d.Select(x => x!.GetValue<int>()).ToArray() : null,
        o["perplexity"]!.GetValue<double>(), o["kl"]!.GetValue<double>(), o["top1_agreement"]!.GetValue<double>())).ToList();

    static string I(int v) => v.ToString(CultureInfo.InvariantCulture);
    static string L(long v) => v.ToString(CultureInfo.InvariantCulture);
    static string D(double v) => v.ToString("R", CultureInfo.InvariantCulture);
}
