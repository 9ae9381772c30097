using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Pruning.Masks;
using Row = E3.Pruning.Pipeline.PrunePipeline.Row;

namespace E3.Pruning.Pipeline;

/// <summary>report.md and report.json of one <c>e3 prune</c> run.</summary>
internal sealed record PruneReport(string Markdown, JsonObject Json)
{
    /// <param name="masks">The compare rows of the teacher and every mask on held-out text (before distillation).</param>
    /// <param name="healed">The compare rows of the teacher and every healed, exported student.</param>
    /// <param name="students">Which method each healed student came from, with its folder.</param>
    /// <param name="plot">Whether search.png is in the output folder, for report.md to show.</param>
    public static PruneReport Build(PruneRequest s, ModelConfig config, MaskFile learned, IReadOnlyList<Row> masks, IReadOnlyList<Row> healed,
        IReadOnlyList<(string Method, string Folder)> students, JsonObject search, JsonObject speed, bool plot)
    {
        var teacher = masks.Single(r => r.Method == "full");
        Row ByMethod(string method) => masks.Single(r => Path.GetFileNameWithoutExtension(r.Name) == method);
        Row? Healed(string method)
        {
            var folder = students.Where(x => x.Method == method).Select(x => Path.GetFileName(x.Folder)).FirstOrDefault();
            return folder == null ? null : healed.Single(r => r.Name == folder);
        }
        var e3 = ByMethod("e3");
        var baselines = masks.Where(r => r.Method is not ("full" or "e3")).OrderBy(r => r.Kl).ToList();
        var best = baselines.FirstOrDefault();
        var e3Healed = Healed("e3")!;
        double gap = e3.Perplexity - teacher.Perplexity;
        double recovered = gap > 0 ? (e3.Perplexity - e3Healed.Perplexity) / gap : double.NaN;

        var methods = new JsonArray();
        foreach (var r in masks.Where(r => r.Method != "full").OrderBy(r => r.Kl))
        {
            string method = Path.GetFileNameWithoutExtension(r.Name);
            var h = Healed(method);
            methods.Add((JsonNode)new JsonObject
            {
                ["method"] = method, ["dropped"] = r.Dropped == null ? null : new JsonArray(r.Dropped.Select(i => (JsonNode)i).ToArray()),
                ["perplexity"] = r.Perplexity, ["kl"] = r.Kl, ["top1_agreement"] = r.Top1,
                ["healed"] = h == null ? null : new JsonObject { ["perplexity"] = h.Perplexity, ["kl"] = h.Kl, ["top1_agreement"] = h.Top1 },
            });
        }
        var json = new JsonObject
        {
            ["model"] = Path.GetFullPath(s.Model), ["config_hash"] = config.Hash(), ["layers"] = config.NumLayers, ["keep"] = learned.Keep,
            ["kept"] = new JsonArray(learned.Kept.Select(i => (JsonNode)i).ToArray()),
            ["dropped"] = new JsonArray(learned.Dropped.Select(i => (JsonNode)i).ToArray()),
            ["teacher"] = new JsonObject { ["perplexity"] = teacher.Perplexity },
            ["methods"] = methods,
            ["best_baseline"] = best == null ? null : Path.GetFileNameWithoutExtension(best.Name),
            ["e3_kl_vs_best_baseline"] = best == null ? null : e3.Kl / best.Kl,
            ["distillation_gap_recovered"] = double.IsFinite(recovered) ? recovered : null,
            ["model_out"] = students.First(x => x.Method == "e3").Folder,
            ["speedup"] = speed.DeepClone(),
            ["search"] = new JsonObject
            {
                ["steps"] = search["steps"]?.DeepClone(), ["tokens"] = search["tokens"]?.DeepClone(), ["final_loss"] = search["final_loss"]?.DeepClone(),
                ["seconds"] = search["seconds"]?.DeepClone(), ["plot"] = plot ? "search.png" : null,
            },
        };

        var md = new StringBuilder();
        md.AppendLine("# E3 pruning report").AppendLine();
        md.AppendLine($"Model `{s.Model}` ({config.ModelType}, {config.NumLayers} layers): keep {learned.Keep}, drop {config.NumLayers - learned.Keep} ({P(1 - learned.Keep / (double)config.NumLayers)}).");
        md.AppendLine($"The learned Gumbel-TopK mask drops layers **[{string.Join(", ", learned.Dropped)}]** after {search["steps"]} search steps ({search["tokens"]} tokens).").AppendLine();
        md.AppendLine($"## Held-out quality ({(s.EvalData ?? $"last {P(s.Holdout)} of {s.Data}")}, at least {s.EvalTokens} tokens in whole windows)").AppendLine();
        md.AppendLine("KL is KL(teacher ‖ pruned) per token in nats; top-1 is agreement with the teacher's most likely token. \"Healed\" is after entropy-weighted distillation of the retained layers.").AppendLine();
        md.AppendLine("| method | dropped layers | perplexity | KL | top-1 | healed perplexity | healed KL | healed top-1 |");
        md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
        md.AppendLine($"| teacher (full) | – | {N(teacher.Perplexity)} | 0 | 1 | | | |");
        foreach (var r in masks.Where(r => r.Method != "full").OrderBy(r => r.Kl))
        {
            string method = Path.GetFileNameWithoutExtension(r.Name);
            var h = Healed(method);
            string name = method == "e3" ? "**e3 (learned)**" : method;
            md.AppendLine($"| {name} | [{string.Join(",", r.Dropped ?? [])}] | {N(r.Perplexity)} | {N(r.Kl)} | {N(r.Top1)} | " +
                (h == null ? "| | |" : $"{N(h.Perplexity)} | {N(h.Kl)} | {N(h.Top1)} |"));
        }
        md.AppendLine();
        if (best != null)
            md.AppendLine($"E3's KL is {N(e3.Kl / best.Kl)}× the best baseline's ({Path.GetFileNameWithoutExtension(best.Name)}).");
        if (double.IsFinite(recovered))
            md.AppendLine($"Distillation recovered {P(recovered)} of the perplexity gap between E3's pruned model ({N(e3.Perplexity)}) and the full model ({N(teacher.Perplexity)}): healed {N(e3Healed.Perplexity)}.");
        md.AppendLine().AppendLine("## Speed").AppendLine();
        double ideal = speed["ideal_speedup"]!.GetValue<double>();
        md.AppendLine($"`e3 bench speedup` on {speed["device"]} ({speed["threads"]} threads), batch {speed["batch"]}, median of {speed["repeats"]}; full and pruned alternate in one process.").AppendLine();
        md.AppendLine("| phase | full tok/s | pruned tok/s | speedup | roofline | ideal |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|");
        foreach (var phase in new[] { "prefill", "decode" })
        {
            if (speed[phase] is not { } p) continue; // --bench-decode 0 measures the prefill only
            md.AppendLine($"| {phase} ({speed[phase + "_tokens"]} tokens) | {N(p["full_tps"]!.GetValue<double>())} | {N(p["pruned_tps"]!.GetValue<double>())} | {p["speedup"]!.GetValue<double>():F3}x | {p["roofline_speedup"]!.GetValue<double>():F3}x | {ideal:F3}x |");
        }
        md.AppendLine().AppendLine("Ideal is layers over kept layers. Roofline counts, besides the layers, the work that no mask removes (the LM head, the KV cache): prefill by FLOPs, decode by bytes read. It is the speedup of a phase that runs at a constant rate of its limiting resource.");
        if (plot)
        {
            md.AppendLine().AppendLine("## Search").AppendLine();
            md.AppendLine("Keep probability of every layer across steps, and the distillation loss of the sampled masks:").AppendLine();
            md.AppendLine("![search](search.png)").AppendLine();
        }
        else md.AppendLine();
        md.AppendLine($"The healed, pruned checkpoint (Hugging Face layout, layers renumbered) is in `{Path.GetFileName(students.First(x => x.Method == "e3").Folder)}/`.");
        return new PruneReport(md.ToString(), json);
    }

    static string N(double v) => v.ToString("G5", CultureInfo.InvariantCulture);
    static string P(double v) => v.ToString("P0", CultureInfo.InvariantCulture);

    /// <summary>The report's figures for a library caller: read from <see cref="Json"/>, so they are the ones report.json holds.</summary>
    public PruneOutcome Outcome(MaskFile learned, string markdownFile, string jsonFile)
    {
        var e3 = Json["methods"]!.AsArray().Select(m => m!.AsObject()).Single(m => m["method"]!.GetValue<string>() == "e3");
        return new PruneOutcome
        {
            Mask = learned,
            HealedModel = Json["model_out"]!.GetValue<string>(),
            ReportMarkdown = markdownFile,
            ReportJson = jsonFile,
            TeacherPerplexity = Json["teacher"]!["perplexity"]!.GetValue<double>(),
            PrunedPerplexity = e3["perplexity"]!.GetValue<double>(),
            HealedPerplexity = e3["healed"]!["perplexity"]!.GetValue<double>(),
            GapRecovered = Json["distillation_gap_recovered"]?.GetValue<double>(),
            BestBaseline = Json["best_baseline"]?.GetValue<string>(),
            PrefillSpeedup = Json["speedup"]!["prefill"]!["speedup"]!.GetValue<double>(),
            DecodeSpeedup = Json["speedup"]!["decode"]?["speedup"]?.GetValue<double>(),
        };
    }
}
