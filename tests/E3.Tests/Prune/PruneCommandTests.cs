using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;
using E3.Pruning.Masks;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Prune;

/// <summary>
/// <c>e3 prune</c> end to end through the real exe on a tiny random model: every stage runs, the report agrees with
/// the files the stages wrote, a resumed run reuses them, and bad input leaves no output folder.
/// </summary>
public class PruneCommandTests
{
    const int Layers = 6, Vocab = 96;

    static string[] Args(string model, string data, string output, params string[] extra) =>
    [
        "prune", "--model", model, "--data", data, "--out", output, "--calibration-tokens", "128", "--search-tokens", "256",
        "--distill-tokens", "128", "--eval-tokens", "128", "--seq", "32", "--batch", "2", "--samples", "2",
        "--bench-prefill", "16", "--bench-decode", "4", "--bench-repeats", "1", "--threads", "1", .. extra,
    ];

    static (string Model, string Data) Setup(TempDir dir)
    {
        RandomModel.Write(new RandomModelSpec { Layers = Layers, Hidden = 32, Heads = 2, KvHeads = 1, HeadDim = 16, Intermediate = 64, Vocab = Vocab, Seed = 3, InitStd = 0.2f }, dir["model"]);
        var rng = new Random(5);
        TokenFile.WriteBin(dir["data.bin"], Enumerable.Range(0, 4000).Select(_ => rng.Next(Vocab)).ToArray());
        return (dir["model"], dir["data.bin"]);
    }

    [Fact]
    public void RunsEveryStageWritesAConsistentReportAndResumesFromItsStages()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string output = dir["out"];
        var run = CliProcess.Run(Args(model, data, output, "--keep", "4", "--activation-checkpointing", "--json"));
        Assert.True(run.ExitCode == 0, run.Stderr);
        // Every stage reported its start on stderr, and the search and the distillations recomputed their layers in the
        // backward, as asked (their stored results say what ran).
        foreach (var stage in new[] { "baseline-bi", "search", "compare-masks", "distill-e3", "export-e3", "compare-healed", "speedup" })
            Assert.Contains($"[prune] {stage}: ", run.Stderr);
        var trained = Directory.GetFiles(Path.Combine(output, "stages"), "*.json")
            .Where(f => Path.GetFileName(f) is var n && (n == "search.json" || n.StartsWith("distill-", StringComparison.Ordinal))).ToList();
        Assert.Equal(3, trained.Count);
        Assert.All(trained, f => Assert.True(JsonNode.Parse(File.ReadAllText(f))!["activation_checkpointing"]!.GetValue<bool>(), f));
        var report = JsonNode.Parse(run.Stdout)!.AsObject();

        var learned = MaskFile.Load(Path.Combine(output, "masks", "e3.json"));
        learned.EnsureMatches(ModelConfig.Load(model), "e3.json");
        Assert.Equal(4, learned.Keep);
        Assert.Equal(learned.Dropped, report["dropped"]!.AsArray().Select(n => n!.GetValue<int>()));
        var methods = report["methods"]!.AsArray().Select(n => n!.AsObject()).ToList();
        Assert.Equal(["angular", "bi", "drop-one-kl", "e3", "last", "random"], methods.Select(m => m["method"]!.GetValue<string>()).Order());
        foreach (var m in methods)
        {
            // Every row is a pruned model scored on held-out text: a finite perplexity and a positive KL.
            Assert.True(double.IsFinite(m["perplexity"]!.GetValue<double>()));
            Assert.True(m["kl"]!.GetValue<double>() > 0, $"{m["method"]}: KL {m["kl"]}");
            var mask = MaskFile.Load(Path.Combine(output, "masks", m["method"]!.GetValue<string>() + ".json"));
            Assert.Equal(mask.Dropped, m["dropped"]!.AsArray().Select(n => n!.GetValue<int>()));
        }
        // The methods are listed best first by KL, and the best baseline named is the first non-e3 row.
        var kls = methods.Select(m => m["kl"]!.GetValue<double>()).ToList();
        Assert.Equal(kls.Order(), kls);
        Assert.Equal(methods.First(m => m["method"]!.GetValue<string>() != "e3")["method"]!.GetValue<string>(), report["best_baseline"]!.GetValue<string>());
        // E3 and the best baseline were healed and exported with the kept layers only.
        Assert.NotNull(methods.Single(m => m["method"]!.GetValue<string>() == "e3")["healed"]);
        var exported = ModelConfig.Load(Path.Combine(output, "model-e3"));
        Assert.Equal(4, exported.NumLayers);
        Assert.True(File.Exists(Path.Combine(output, "search.png")));
        string markdown = File.ReadAllText(Path.Combine(output, "report.md"));
        Assert.Contains("**e3 (learned)**", markdown);
        Assert.Contains($"[{string.Join(", ", learned.Dropped)}]", markdown);
        Assert.True(report["speedup"]!["prefill"]!["speedup"]!.GetValue<double>() > 0);

        // A resumed run finds every stage done and rebuilds the same report from their stored results.
        string before = File.ReadAllText(Path.Combine(output, "report.json"));
        var again = CliProcess.Run(Args(model, data, output, "--keep", "4", "--resume", "--json"));
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("done earlier, kept", again.Stderr);
        Assert.Equal(before, File.ReadAllText(Path.Combine(output, "report.json")));

        // Without --resume an existing run is never overwritten.
        var refused = CliProcess.Run(Args(model, data, output, "--keep", "4"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("--resume", refused.Stderr);
    }

    [Theory]
    [InlineData("--keep", "6", "--keep")]
    [InlineData("--keep", "0", "--keep")]
    [InlineData("--prune", "0.01", "--prune")]
    [InlineData("--holdout", "1", "--holdout")]
    [InlineData("--baselines", "taylor", "--baselines")]
    [InlineData("--bench-repeats", "0", "--bench-repeats")] // once refused by the last stage, after every training stage
    public void OutOfRangeOptionsAreUsageErrorsThatLeaveNoOutputFolder(string option, string value, string named)
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        string[] target = option is "--keep" or "--prune" ? [] : ["--keep", "4"];
        var r = CliProcess.Run(Args(model, data, dir["out"], [.. target, option, value]));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(named, r.Stderr);
        Assert.False(Directory.Exists(dir["out"]));
    }

    [Fact]
    public void AFailingStageIsNamedWithItsCauseAndHowToContinue()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        // An unreadable distillation checkpoint in a run folder that is resumed: distill-e3 fails on it.
        Directory.CreateDirectory(Path.Combine(dir["out"], "checkpoints", "distill-e3"));
        File.WriteAllText(Path.Combine(dir["out"], "checkpoints", "distill-e3", "latest"), "not a checkpoint");
        var r = CliProcess.Run(Args(model, data, dir["out"], "--keep", "4", "--baselines", "last", "--resume"));
        Assert.Equal(1, r.ExitCode);
        string error = r.Stderr.Split('\n').Single(l => l.StartsWith("e3: error: ", StringComparison.Ordinal));
        Assert.Contains("stage 'distill-e3' failed", error);
        Assert.Contains("distill-e3", error[(error.IndexOf("failed", StringComparison.Ordinal) + 6)..]); // the cause names the checkpoint
        Assert.Contains("--resume", error);
        Assert.False(File.Exists(Path.Combine(dir["out"], "report.json")));
    }

    [Fact]
    public void Tf32OnTheCpuIsAUsageErrorBeforeAnyStage()
    {
        using var dir = new TempDir();
        var (model, data) = Setup(dir);
        var r = CliProcess.Run(Args(model, data, dir["out"], "--keep", "4", "--tf32"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--tf32: the cpu backend has no tensor cores", r.Stderr);
        Assert.False(Directory.Exists(dir["out"]));
    }

    [Fact]
    public void EmptyDataIsNamedAndLeavesNoOutputFolder()
    {
        using var dir = new TempDir();
        var (model, _) = Setup(dir);
        File.WriteAllBytes(dir["empty.bin"], []);
        var r = CliProcess.Run(Args(model, dir["empty.bin"], dir["out"], "--keep", "4"));
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("empty.bin", r.Stderr);
        Assert.False(Directory.Exists(dir["out"]));
    }
}
