using E3.Interop.IO;
using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Model.IO;
using E3.Pruning.Masks;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 compare</c>: the teacher, each mask applied to the teacher's weights, and each student checkpoint, evaluated
/// on the same windows (perplexity, KL to the teacher, top-1 agreement), as a markdown table and JSON.
/// </summary>
internal static class CompareCommand
{
    public static Command Create()
    {
        var teacher = new Option<string>("--teacher") { Description = "Teacher (full) model folder; masks are applied to its weights", Required = true };
        var data = CommonOptions.Data();
        var masks = new Option<string[]>("--masks") { Description = "mask.json files to compare", AllowMultipleArgumentsPerToken = true };
        var students = new Option<string[]>("--student") { Description = "Student checkpoint folders (e.g. healed exports) to compare", AllowMultipleArgumentsPerToken = true };
        var window = CommonOptions.Window();
        var maxTokens = CommonOptions.MaxTokens();
        var output = CommonOptions.OutputFile(new Option<string?>("--out") { Description = "Also write the markdown table to this file (atomically)" });
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("compare", "Compare masks and student checkpoints against the teacher: perplexity, KL, top-1 agreement")
        {
            teacher, data, masks, students, window, maxTokens, output, device, threads, json,
        };
        cmd.Validators.Add(r =>
        {
            if (r.GetResult(masks) == null && r.GetResult(students) == null) r.AddError("give at least one of --masks and --student");
        });
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string teacherDir = p.GetValue(teacher)!;
            using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
            using var t = DecoderModel.Load(teacherDir, backend);
            // Every mask is checked before any model runs, so a mismatched one costs nothing.
            var maskFiles = ModelComparison.LoadMasks(p.GetValue(masks) ?? [], t.Config);
            int[] tokens = DataTokens.Read(p.GetValue(data)!, teacherDir, t.Config.VocabSize);
            int windowSize = p.GetValue(window);
            long limit = CommonOptions.TokenLimit(p.GetValue(maxTokens));
            var rows = ConsoleProgress.Run("compare windows", "tokens", report => ModelComparison.Run(t, maskFiles, p.GetValue(students) ?? [],
                tokens, windowSize, limit, (done, total) => report(done, total, (double)done * windowSize)));
            string markdown = ComparisonTable.Markdown(rows);
            if (p.GetValue(output) is { } reportPath) AtomicFile.WriteAllText(reportPath, markdown);
            if (p.GetValue(json))
                CliRunner.WriteJson(new JsonObject { ["teacher"] = teacherDir, ["rows"] = ComparisonTable.Json(rows) });
            else
                Console.Out.Write(markdown);
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
