using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;
using E3.Pruning.Distill;
using E3.Pruning.Masks;
using E3.Pruning.Pipeline;
using E3.Pruning.Search;
using E3.Pruning.TeacherCache;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Prune;

/// <summary>
/// <see cref="Pruner.Run"/>, the library call behind <c>e3 prune</c>, on a tiny random model: the stages run in order
/// and report as they go, the outcome is what report.json says, a failing stage is named and the run resumes from it,
/// and a request no stage could run is refused before anything is written.
/// </summary>
public class PrunerTests
{
    const int Layers = 6, Vocab = 96;

    static PruneRequest Request(TempDir dir)
    {
        RandomModel.Write(new RandomModelSpec { Layers = Layers, Hidden = 32, Heads = 2, KvHeads = 1, HeadDim = 16, Intermediate = 64, Vocab = Vocab, Seed = 3, InitStd = 0.2f }, dir["model"]);
        var rng = new Random(5);
        TokenFile.WriteBin(dir["data.bin"], Enumerable.Range(0, 4000).Select(_ => rng.Next(Vocab)).ToArray());
        return new PruneRequest
        {
            Model = dir["model"], Data = dir["data.bin"], Output = dir["out"], Keep = 4, Baselines = ["last", "bi"],
            CalibrationTokens = 128, SearchTokens = 256, DistillTokens = 128, EvalTokens = 128, Sequence = 32, Batch = 2, Samples = 2,
            BenchPrefill = 16, BenchDecode = 4, BenchRepeats = 1, Threads = 1,
        };
    }

    [Fact]
    public void RunsTheStagesInOrderReportingEachAndReturnsTheReportsFigures()
    {
        using var dir = new TempDir();
        var request = Request(dir);
        var events = new List<PruneProgress>();
        var searches = new List<(SearchState State, MaskFile Mask)>();
        var outcome = Pruner.Run(request, events.Add, (state, mask) => searches.Add((state, mask)));

        // Each stage starts, reports its progress, and finishes before the next starts.
        var report = JsonNode.Parse(File.ReadAllText(outcome.ReportJson))!.AsObject();
        string best = report["best_baseline"]!.GetValue<string>();
        Assert.Contains(best, new[] { "last", "bi" });
        string[] stages = ["baseline-last", "baseline-bi", "search", "compare-masks", "distill-e3", "export-e3", "distill-" + best, "export-" + best, "compare-healed", "speedup"];
        var milestones = events.Where(e => e.Event != PruneEvent.Advanced).Select(e => (e.Stage, e.Event)).ToList();
        Assert.Equal(stages.SelectMany(s => new[] { (s, PruneEvent.Started), (s, PruneEvent.Finished) }), milestones);
        string? current = null;
        foreach (var e in events)
        {
            if (e.Event == PruneEvent.Started) current = e.Stage;
            Assert.Equal(current, e.Stage);
            if (e.Event == PruneEvent.Advanced && e.Total > 0) Assert.InRange(e.Done, 0, e.Total);
        }
        foreach (var stage in new[] { "baseline-bi", "search", "compare-masks", "distill-e3", "export-e3", "speedup" })
            Assert.Contains(events, e => e.Stage == stage && e.Event == PruneEvent.Advanced);

        // The search's hook saw its final state and the mask the run kept.
        var (state, searched) = Assert.Single(searches);
        Assert.Equal(outcome.Mask.Kept, searched.Kept);
        Assert.Equal(JsonNode.Parse(File.ReadAllText(Path.Combine(request.Output, "stages", "search.json")))!["steps"]!.GetValue<long>(), state.Step);
        Assert.Equal(state.Step, state.LossHistory.Count);

        // The outcome is what report.json holds, and the files it names exist.
        var e3 = report["methods"]!.AsArray().Single(m => m!["method"]!.GetValue<string>() == "e3")!;
        Assert.Equal(report["teacher"]!["perplexity"]!.GetValue<double>(), outcome.TeacherPerplexity);
        Assert.Equal(e3["perplexity"]!.GetValue<double>(), outcome.PrunedPerplexity);
        Assert.Equal(e3["healed"]!["perplexity"]!.GetValue<double>(), outcome.HealedPerplexity);
        Assert.Equal(best, outcome.BestBaseline);
        Assert.Equal(report["speedup"]!["prefill"]!["speedup"]!.GetValue<double>(), outcome.PrefillSpeedup);
        Assert.Equal(report["speedup"]!["decode"]!["speedup"]!.GetValue<double>(), outcome.DecodeSpeedup);
        // A random model's perplexities: finite and above 1, whichever way pruning moves them.
        Assert.All(new[] { outcome.TeacherPerplexity, outcome.PrunedPerplexity, outcome.HealedPerplexity }, p => Assert.InRange(p, 1.0, 10.0 * Vocab));
        Assert.Equal(4, outcome.Mask.Keep);
        Assert.Equal(outcome.Mask.Kept, MaskFile.Load(Path.Combine(request.Output, "masks", "e3.json")).Kept);
        Assert.Equal(4, ModelConfig.Load(outcome.HealedModel).NumLayers);
        // No hook wrote search.png, so neither report claims a plot.
        Assert.Null(report["search"]!["plot"]);
        Assert.DoesNotContain("search.png", File.ReadAllText(outcome.ReportMarkdown));
    }

    [Fact]
    public void AFailingStageIsNamedKeepsTheEarlierStagesAndTheRunResumesFromIt()
    {
        using var dir = new TempDir();
        // EvalTokens 0 scores every held-out token.
        var request = Request(dir) with { Baselines = ["last"], DistillBestBaseline = false, Resume = true, EvalTokens = 0 };
        // A distillation checkpoint that cannot be read: the distill-e3 stage resumes from it and fails.
        string broken = Path.Combine(request.Output, "checkpoints", "distill-e3");
        Directory.CreateDirectory(broken);
        File.WriteAllText(Path.Combine(broken, "latest"), "not a checkpoint");

        var failed = Assert.Throws<PruneStageException>(() => Pruner.Run(request));
        Assert.Equal("distill-e3", failed.Stage);
        Assert.IsType<TrainingCheckpointException>(failed.InnerException);
        Assert.Contains("distill-e3", failed.Message);
        Assert.Equal(["baseline-last.json", "compare-masks.json", "request.json", "search.json"],
            Directory.GetFiles(Path.Combine(request.Output, "stages")).Select(Path.GetFileName).Order());
        Assert.False(File.Exists(Path.Combine(request.Output, "report.json")));

        // The run resumes only with the target and budgets it started with; the refusal names the option.
        var changed = Assert.ThrowsAny<ArgumentException>(() => Pruner.Run(request with { Keep = 3 }));
        Assert.StartsWith("--keep: 3 differs from 4", changed.Message);
        Assert.StartsWith("--distill-tokens: ", Assert.ThrowsAny<ArgumentException>(() => Pruner.Run(request with { DistillTokens = 64 })).Message);

        Directory.Delete(broken, true);
        var events = new List<PruneProgress>();
        var outcome = Pruner.Run(request, events.Add);
        Assert.Equal(["baseline-last", "search", "compare-masks"], events.Where(e => e.Event == PruneEvent.Kept).Select(e => e.Stage));
        Assert.Equal(["distill-e3", "export-e3", "compare-healed", "speedup"], events.Where(e => e.Event == PruneEvent.Started).Select(e => e.Stage));
        Assert.False(Directory.Exists(Path.Combine(request.Output, "model-last"))); // the best baseline was not healed, as asked
        Assert.True(File.Exists(outcome.ReportJson));
    }

    [Fact]
    public void ACancelledRunStopsInsideItsStageUnwrappedSavesTheSearchsStepsAndResumes()
    {
        using var dir = new TempDir();
        var request = Request(dir) with { Baselines = ["last"], DistillBestBaseline = false };
        using var cancel = new CancellationTokenSource();
        void StopAtSearchStep3(PruneProgress p)
        {
            if (p is { Stage: "search", Event: PruneEvent.Advanced, Done: 3 }) cancel.Cancel();
        }
        var stopped = new List<PruneProgress>();
        Assert.ThrowsAny<OperationCanceledException>(() => Pruner.Run(request, p => { stopped.Add(p); StopAtSearchStep3(p); }, cancel: cancel.Token));
        // The search stopped at its next step, without finishing: the cancellation came from inside the stage.
        Assert.Equal(3, stopped.Where(p => p.Stage == "search" && p.Event == PruneEvent.Advanced).Max(p => p.Done));
        Assert.DoesNotContain(stopped, p => p.Stage == "search" && p.Event == PruneEvent.Finished);
        Assert.False(File.Exists(Path.Combine(request.Output, "stages", "search.json")));

        // The search saved its 3 steps when it stopped (its next regular checkpoint was at step 50), and resumes there.
        Assert.True(SearchCheckpoint.Exists(Path.Combine(request.Output, "checkpoints", "search")));
        var events = new List<PruneProgress>();
        var outcome = Pruner.Run(request with { Resume = true }, events.Add);
        Assert.Equal(["baseline-last"], events.Where(e => e.Event == PruneEvent.Kept).Select(e => e.Stage));
        Assert.Equal(4, events.First(e => e is { Stage: "search", Event: PruneEvent.Advanced }).Done);
        Assert.Equal(3, JsonNode.Parse(File.ReadAllText(Path.Combine(request.Output, "stages", "search.json")))!["resumed_from"]!.GetValue<long>());
        Assert.True(File.Exists(outcome.ReportJson));
    }

    [Fact]
    public void WithATeacherCacheItIsBuiltOnceAndTheSearchAndTheDistillationReadIt()
    {
        using var dir = new TempDir();
        var request = Request(dir) with { Baselines = ["last"], DistillBestBaseline = false, TeacherCacheK = 8 };
        var events = new List<PruneProgress>();
        var outcome = Pruner.Run(request, events.Add);
        Assert.Equal(["baseline-last", "teacher-cache", "search", "compare-masks", "distill-e3", "export-e3", "compare-healed", "speedup"],
            events.Where(e => e.Event == PruneEvent.Started).Select(e => e.Stage));
        // The cache holds K = 8 entries per token of the sequences the budgets need: max(256 search, 128 distillation
        // tokens) = 8 sequences of 32, taken at evenly spaced offsets across the 3600-token training split.
        using (var reader = TeacherCacheReader.Open(Path.Combine(request.Output, "teacher-cache.e3tc")))
        {
            Assert.Equal(8, reader.Header.K);
            Assert.Equal(256, reader.Header.DataTokens);
            Assert.Equal(request.Sequence, reader.Header.SequenceLength);
        }
        int[] train = TokenFile.Read(Path.Combine(request.Output, "data", "train.bin")).Ids;
        int[] cached = TokenFile.Read(Path.Combine(request.Output, "data", "cache-train.bin")).Ids;
        Assert.Equal(3600, train.Length);
        Assert.Equal(Enumerable.Range(0, 8).SelectMany(i => train.Skip(i * (3600 - 32) / 7).Take(32)), cached);
        Assert.Equal(4, ModelConfig.Load(outcome.HealedModel).NumLayers);
        Assert.StartsWith("--teacher-cache-k: 4 differs from 8",
            Assert.ThrowsAny<ArgumentException>(() => Pruner.Run(request with { Resume = true, TeacherCacheK = 4 })).Message);

        // A finished cache that has gone is built again on resume; every other stage is kept.
        File.Delete(Path.Combine(request.Output, "teacher-cache.e3tc"));
        var resumed = new List<PruneProgress>();
        Pruner.Run(request with { Resume = true }, resumed.Add);
        Assert.Equal(["teacher-cache"], resumed.Where(e => e.Event == PruneEvent.Started).Select(e => e.Stage));

        // A run recorded before an option existed counts as having had its default: a live-teacher run (K = 0) whose
        // record lacks the key is not resumed from a cache.
        string record = Path.Combine(request.Output, "stages", "request.json");
        var identity = JsonNode.Parse(File.ReadAllText(record))!.AsObject();
        identity.Remove("teacher-cache-k");
        File.WriteAllText(record, identity.ToJsonString());
        Assert.StartsWith("--teacher-cache-k: 8 differs from 0",
            Assert.ThrowsAny<ArgumentException>(() => Pruner.Run(request with { Resume = true })).Message);

        // The search and the distillation read the cache: one cut short just before either fails that very stage.
        foreach (var stage in new[] { "search", "distill-e3" })
        {
            var broken = request with { Output = dir["out-" + stage] };
            string cache = Path.Combine(broken.Output, "teacher-cache.e3tc");
            var failed = Assert.Throws<PruneStageException>(() => Pruner.Run(broken, p =>
            {
                if (p.Stage == stage && p.Event == PruneEvent.Started)
                    using (var file = File.Open(cache, FileMode.Open)) file.SetLength(file.Length - 100);
            }));
            Assert.Equal(stage, failed.Stage);
            Assert.IsType<TeacherCacheException>(failed.InnerException);
        }
    }

    public static TheoryData<string, string> Refusals => new()
    {
        { "keep", "--keep" }, { "bench-repeats", "--bench-repeats" }, { "baselines", "--baselines" }, { "device", "--device" },
        { "tf32", "--tf32" }, { "seq", "--seq" }, { "holdout", "--holdout" }, { "search-lr", "--search-lr" },
        { "eval-tokens", "--eval-tokens" }, { "distill-tokens", "--distill-tokens" }, { "calibration-tokens", "--calibration-tokens" },
        { "model", "--model" }, { "baselines-twice", "--baselines" }, { "teacher-cache-k", "--teacher-cache-k" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void ARequestNoStageCouldRunIsRefusedNamingTheOptionBeforeAnythingIsWritten(string change, string named)
    {
        using var dir = new TempDir();
        var request = Request(dir);
        request = change switch
        {
            "keep" => request with { Keep = Layers },
            "bench-repeats" => request with { BenchRepeats = 0 },
            "baselines" => request with { Baselines = ["bi", "taylor"] },
            "device" => request with { Device = "tpu" },
            "tf32" => request with { Tf32 = true },
            "seq" => request with { Sequence = 1 },
            "holdout" => request with { Holdout = 1 },
            "search-lr" => request with { SearchLearningRate = double.NaN },
            "eval-tokens" => request with { EvalTokens = -1 },
            "distill-tokens" => request with { DistillTokens = 0 },
            "calibration-tokens" => request with { CalibrationTokens = 0 },
            "model" => request with { Model = "" },
            "baselines-twice" => request with { Baselines = ["bi", "bi"] },
            "teacher-cache-k" => request with { TeacherCacheK = 65 }, // above the KD loss's 64, though within the vocabulary
            _ => throw new ArgumentOutOfRangeException(nameof(change)),
        };
        var e = Assert.ThrowsAny<ArgumentException>(() => Pruner.Run(request));
        Assert.StartsWith(named + ":", e.Message);
        Assert.False(Directory.Exists(request.Output));
    }
}
