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
            var maskFiles = (p.GetValue(masks) ?? []).Select(path => (Path: path, Mask: LoadMatching(path, t.Config))).ToList();
            int[] tokens = DataTokens.Read(p.GetValue(data)!, teacherDir, t.Config.VocabSize);
            var studentModels = new List<DecoderModel>();
            try
            {
                foreach (string dir in p.GetValue(students) ?? []) studentModels.Add(DecoderModel.Load(dir, backend));
                var entries = new List<(string Name, string Method, int Layers, IReadOnlyList<int>? Dropped, StudentUnderTest Model)>
                {
                    ("teacher", "full", t.Config.NumLayers, [], new StudentUnderTest(t, null)),
                };
                foreach (var (path, mask) in maskFiles)
                    entries.Add((Path.GetFileName(path), mask.Method, mask.Keep, mask.Dropped, new StudentUnderTest(t, mask.ToLayerMask())));
                foreach (var s in studentModels)
                    entries.Add((Path.GetFileName(Path.GetDirectoryName(s.Config.SourcePath))!, "student", s.Config.NumLayers, null, new StudentUnderTest(s, null)));
                int windowSize = p.GetValue(window);
                long limit = CommonOptions.TokenLimit(p.GetValue(maxTokens));
                var results = ConsoleProgress.Run("compare windows", "tokens", report => TeacherAgreement.EvaluateMany(t, null, entries.Select(e => e.Model).ToList(),
                    tokens, windowSize, limit, (done, total) => report(done, total, (double)done * windowSize)));
                var rows = entries.Select((e, i) => new ComparisonRow(e.Name, e.Method, e.Layers, e.Dropped, results[i])).ToList();
                string markdown = ComparisonTable.Markdown(rows);
                if (p.GetValue(output) is { } reportPath) AtomicFile.WriteAllText(reportPath, markdown);
                if (p.GetValue(json))
                    CliRunner.WriteJson(new JsonObject { ["teacher"] = teacherDir, ["rows"] = ComparisonTable.Json(rows) });
                else
                    Console.Out.Write(markdown);
                return ExitCodes.Ok;
            }
            finally
            {
                foreach (var s in studentModels) s.Dispose();
            }
        }));
        return cmd;
    }

    static MaskFile LoadMatching(string path, ModelConfig config)
    {
        var mask = MaskFile.Load(path);
        mask.EnsureMatches(config, path);
        return mask;
    }
}
