using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model.Evaluation;
using E3.Pruning.Baselines;
using E3.Pruning.Distill;
using E3.Pruning.Export;
using E3.Pruning.Masks;
using E3.Pruning.Search;
using E3.Pruning.TeacherCache;

namespace E3.Pruning.Reports;

/// <summary>
/// The JSON results of the pipeline's steps, one layout each: what <c>e3 baseline</c>, <c>search</c>, <c>distill</c>,
/// <c>export</c> and <c>bench speedup</c> print with <c>--json</c>, and what <c>e3 prune</c> stores as its stages' results.
/// Written in one place so that a stage read back by a resumed run has the layout the command printed.
/// </summary>
internal static class ResultJson
{
    /// <summary>The layout of <c>bench speedup --json</c> (bench/schema/bench-speedup.schema.json).</summary>
    public const string SpeedupSchema = "e3.bench.speedup/1";

    /// <summary>
    /// Indented, and escaping only what JSON requires: the default encoder's HTML-safe escapes (<c>+</c> as
    /// <c>\u002B</c>) would garble versions such as 1.0.0+commit for anyone reading the output.
    /// </summary>
    public static string Format(JsonNode node) => node.ToJsonString(Options);

    static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static JsonArray Array(IEnumerable<int> values) => new(values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());

    public static JsonArray Array(IEnumerable<double> values) => new(values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());

    public static JsonArray Array(IEnumerable<string> values) => new(values.Select(v => (JsonNode?)JsonValue.Create(v)).ToArray());

    /// <summary>A baseline's mask, and the scores it was chosen by.</summary>
    public static JsonObject Baseline(BaselineResult result, int layers, string output, double seconds)
    {
        var mask = result.Mask;
        var o = new JsonObject
        {
            ["method"] = mask.Method,
            ["out"] = output,
            ["num_layers"] = layers,
            ["keep"] = mask.Keep,
            ["kept"] = Array(mask.Kept),
            ["dropped"] = Array(mask.Dropped),
            ["tokens"] = mask.Tokens,
            ["seconds"] = seconds,
        };
        if (mask.Seed is { } s) o["seed"] = s;
        if (mask.Scores is { } scores) o["scores"] = Array(scores);
        if (result.BlockDistances is { } d) o["block_distances"] = Array(d);
        if (result.Greedy is { } g)
        {
            o["greedy_order"] = Array(g.Order);
            o["greedy_kl"] = Array(g.KlAfterStep);
        }
        return o;
    }

    /// <summary>A finished (or resumed and finished) mask search.</summary>
    /// <param name="startStep">The step the run started from (0, or a checkpoint's).</param>
    /// <param name="resumed">Whether it continued from a checkpoint.</param>
    public static JsonObject Search(MaskSearch search, SearchState state, MaskFile mask, string output, string? plot, int layers,
        long startStep, bool resumed, int tokensPerBatch, double seconds)
    {
        long stepsRun = state.Step - startStep;
        return new JsonObject
        {
            ["out"] = output,
            ["plot"] = plot,
            ["layers"] = layers,
            ["keep"] = search.Options.Keep,
            ["kept"] = Array(mask.Kept),
            ["dropped"] = Array(mask.Dropped),
            ["alpha"] = new JsonArray(state.Alpha.Select(a => (JsonNode)(double)a).ToArray()),
            ["steps"] = state.Step,
            ["steps_run"] = stepsRun,
            ["resumed_from"] = resumed ? startStep : null,
            ["activation_checkpointing"] = search.Options.ActivationCheckpointing,
            ["tokens"] = mask.Tokens,
            ["final_loss"] = state.LossHistory.Count > 0 ? state.LossHistory[^1].Loss : null,
            ["seconds"] = seconds,
            ["steps_per_second"] = stepsRun / Math.Max(1e-9, seconds),
            ["tokens_per_second"] = stepsRun * tokensPerBatch / Math.Max(1e-9, seconds),
        };
    }

    /// <summary>A training run (<c>e3 train</c> or <c>e3 distill</c>, named by <paramref name="command"/>).</summary>
    public static JsonObject Training(string command, TrainingOutcome o, string output)
    {
        var r = o.Result;
        return new JsonObject
        {
            ["command"] = command, ["out"] = output, ["steps"] = r.Steps, ["start_step"] = r.StartStep, ["resumed"] = o.Resumed,
            ["tokens"] = r.Tokens, ["final_loss"] = r.FinalLoss, ["seconds"] = r.Seconds, ["fingerprint"] = o.Fingerprint,
            ["trainable_tensors"] = o.TrainableTensors, ["trainable_values"] = o.TrainableValues,
            ["activation_checkpointing"] = o.ActivationCheckpointing,
            ["loss_history"] = new JsonArray(r.LossHistory.Select(p => (JsonNode)new JsonArray(p.Step, p.Loss)).ToArray()),
        };
    }

    /// <summary>A built (or resumed, or found complete) top-K teacher cache.</summary>
    public static JsonObject TeacherCache(TeacherCacheBuild build, int topK, int vocab) => new()
    {
        ["out"] = build.Path,
        ["resumed"] = build.Resumed,
        ["tokens"] = build.Tokens,
        ["tokens_computed"] = build.TokensComputed,
        ["shards"] = build.Shards,
        ["topk"] = topK,
        ["vocab"] = vocab,
        ["seconds"] = build.Seconds,
        ["tokens_per_second"] = build.TokensComputed / Math.Max(1e-9, build.Seconds),
    };

    /// <summary>An exported pruned checkpoint.</summary>
    public static JsonObject Export(ExportResult r) => new()
    {
        ["out"] = r.OutputPath, ["format"] = "hf", ["source_layers"] = r.SourceLayers, ["layers"] = r.Kept.Count,
        ["kept"] = Array(r.Kept), ["tensors"] = r.Tensors, ["tensor_bytes"] = r.TensorBytes,
        ["sharded"] = r.Sharded, ["files"] = Array(r.Files),
    };

    /// <summary>The body of <c>bench speedup --json</c> (the bench environment is wrapped around it).</summary>
    public static JsonObject Speedup(SpeedupResult r)
    {
        static JsonObject Phase(PhaseSpeed s, double roofline) => new()
        {
            ["full_tps"] = s.FullTps,
            ["pruned_tps"] = s.PrunedTps,
            ["speedup"] = s.Speedup,
            ["roofline_speedup"] = roofline,
            ["full_seconds"] = Array(s.FullSeconds),
            ["pruned_seconds"] = Array(s.PrunedSeconds),
            ["paired_speedups"] = Array(s.PairedSpeedups),
            ["paired_median"] = s.PairedMedian,
            ["paired_interval"] = s.PairedInterval is { } ci ? new JsonObject { ["low"] = ci.Low, ["high"] = ci.High, ["coverage"] = ci.Coverage } : null,
        };
        return new JsonObject
        {
            ["prefill"] = Phase(r.Prefill, r.Roofline.Prefill),
            ["decode"] = r.Roofline.Decode is { } decodeRoofline ? Phase(r.Decode, decodeRoofline) : null, // --decode 0 measures the prefill only
            ["layers"] = r.Layers,
            ["dropped"] = Array(r.Dropped),
            ["ideal_speedup"] = r.Layers / (double)(r.Layers - r.Dropped.Length),
            ["batch"] = r.Batch,
            ["prefill_tokens"] = r.PrefillTokens,
            ["decode_tokens"] = r.DecodeTokens,
            ["repeats"] = r.Repeats,
            ["device"] = r.Device,
            ["threads"] = r.Threads,
        };
    }
}
