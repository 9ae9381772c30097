using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using E3.Model.Evaluation;

namespace E3.Pruning.Reports;

/// <summary>One row of <c>e3 compare</c>: a model evaluated against the teacher.</summary>
/// <param name="Name">What the row is: "teacher", a mask file's name, or a student folder.</param>
/// <param name="Method">How its layers were chosen (mask.json's method), "full" for the teacher, "student" for a checkpoint.</param>
/// <param name="Layers">Layers the model runs.</param>
/// <param name="Dropped">Teacher layers it skips; null for a separate checkpoint, whose provenance the folder does not record.</param>
internal sealed record ComparisonRow(string Name, string Method, int Layers, IReadOnlyList<int>? Dropped, AgreementResult Result);

/// <summary>Renders comparison rows as a markdown table and as JSON, with the same numbers <c>e3 eval</c> prints.</summary>
internal static class ComparisonTable
{
    /// <summary>A markdown table, one line per row, in the order given.</summary>
    public static string Markdown(IEnumerable<ComparisonRow> rows)
    {
        var text = new StringBuilder();
        text.AppendLine("| model | method | layers | dropped | perplexity | KL(teacher‖model) | top-1 agreement |");
        text.AppendLine("|---|---|---:|---|---:|---:|---:|");
        foreach (var row in rows) text.AppendLine(MarkdownRow(row));
        return text.ToString();
    }

    /// <summary>One table line; numbers are formatted as <see cref="Number"/> does.</summary>
    public static string MarkdownRow(ComparisonRow row) =>
        $"| {row.Name} | {row.Method} | {row.Layers} | {(row.Dropped == null ? "n/a" : "[" + string.Join(",", row.Dropped) + "]")} | " +
        $"{Number(row.Result.Perplexity.Perplexity)} | {Number(row.Result.MeanKl)} | {Number(row.Result.Top1Agreement)} |";

    /// <summary>Six significant digits: enough to tell masks apart, short enough to read.</summary>
    public static string Number(double value) => value.ToString("G6", CultureInfo.InvariantCulture);

    /// <summary>The rows as a JSON array with full-precision numbers.</summary>
    public static JsonArray Json(IEnumerable<ComparisonRow> rows) => new(rows.Select(r => (JsonNode?)new JsonObject
    {
        ["name"] = r.Name,
        ["method"] = r.Method,
        ["layers"] = r.Layers,
        ["dropped"] = r.Dropped == null ? null : new JsonArray(r.Dropped.Select(i => (JsonNode?)i).ToArray()),
        ["perplexity"] = r.Result.Perplexity.Perplexity,
        ["mean_nll"] = r.Result.Perplexity.MeanNll,
        ["kl"] = r.Result.MeanKl,
        ["top1_agreement"] = r.Result.Top1Agreement,
        ["tokens"] = r.Result.Perplexity.TokensScored,
        ["windows"] = r.Result.Perplexity.Windows,
    }).ToArray());
}
