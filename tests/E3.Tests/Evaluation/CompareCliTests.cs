using System.Text.Json;
using E3.Model;
using E3.Model.Evaluation;
using E3.Pruning.Reports;
using E3.Tests.Export;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Evaluation;

/// <summary>The real e3 executable: eval with a teacher, compare, export; exit codes and outputs.</summary>
public class CompareCliTests
{
    static string WriteTokens(string path, int count)
    {
        var bytes = Enumerable.Range(0, count).SelectMany(i => BitConverter.GetBytes((uint)((i * 29 + 3) % 96))).ToArray();
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static JsonElement Json(CliProcess.Result r)
    {
        Assert.True(r.ExitCode == 0, $"exit {r.ExitCode}: {r.Stderr}");
        return JsonDocument.Parse(r.Stdout).RootElement.Clone();
    }

    [Fact]
    public void CompareRowsMatchSeparateEvalRuns()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        string a = ExportTestModels.WriteMask(dir["a.json"], config, [0, 2, 3, 5]);
        string b = ExportTestModels.WriteMask(dir["b.json"], config, [0, 1, 2, 3]);
        string data = WriteTokens(dir["data.bin"], 150);
        string[] common = ["--data", data, "--window", "32", "--threads", "1"];

        var compare = Json(CliProcess.Run(["compare", "--teacher", dir["model"], "--masks", a, b, "--json", "--out", dir["report.md"], .. common]));
        var rows = compare.GetProperty("rows").EnumerateArray().ToArray();
        Assert.Equal(["teacher", "a.json", "b.json"], rows.Select(r => r.GetProperty("name").GetString()));
        string report = File.ReadAllText(dir["report.md"]);

        foreach (var (mask, row) in new[] { (a, rows[1]), (b, rows[2]) })
        {
            var eval = Json(CliProcess.Run(["eval", "--model", dir["model"], "--mask", mask, "--teacher", dir["model"], "--json", .. common]));
            // Same windows, same deterministic CPU forward, same double accumulation: equal to the last bit.
            foreach (string field in new[] { "perplexity", "mean_nll", "kl", "top1_agreement" })
                Assert.Equal(eval.GetProperty(field).GetDouble(), row.GetProperty(field).GetDouble());
            Assert.Equal(eval.GetProperty("tokens").GetInt64(), row.GetProperty("tokens").GetInt64());
            Assert.Equal(eval.GetProperty("dropped").EnumerateArray().Select(e => e.GetInt32()), row.GetProperty("dropped").EnumerateArray().Select(e => e.GetInt32()));
            Assert.True(eval.GetProperty("kl").GetDouble() > 0);
            var withoutTeacher = Json(CliProcess.Run(["eval", "--model", dir["model"], "--mask", mask, "--json", .. common]));
            Assert.Equal(withoutTeacher.GetProperty("perplexity").GetDouble(), row.GetProperty("perplexity").GetDouble());
            var expectedLine = ComparisonTable.MarkdownRow(new ComparisonRow(Path.GetFileName(mask), "test", 4,
                eval.GetProperty("dropped").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                new AgreementResult(new PerplexityResult(eval.GetProperty("mean_nll").GetDouble(), eval.GetProperty("perplexity").GetDouble(), 0, 0),
                    eval.GetProperty("kl").GetDouble(), eval.GetProperty("top1_agreement").GetDouble())));
            Assert.Contains(expectedLine, report.Split('\n'));
        }
        var teacherRow = rows[0];
        Assert.Equal(0.0, teacherRow.GetProperty("kl").GetDouble());
        Assert.Equal(1.0, teacherRow.GetProperty("top1_agreement").GetDouble());
        var plain = Json(CliProcess.Run(["eval", "--model", dir["model"], "--json", .. common]));
        Assert.Equal(plain.GetProperty("perplexity").GetDouble(), teacherRow.GetProperty("perplexity").GetDouble());
    }

    [Fact]
    public void CompareTakesAnExportedStudentAndWritesMarkdownToStdout()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, false));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        var export = Json(CliProcess.Run("export", "--model", dir["model"], "--mask", mask, "--out", dir["pruned"], "--json"));
        Assert.Equal(4, export.GetProperty("layers").GetInt32());
        string data = WriteTokens(dir["data.bin"], 80);

        var r = CliProcess.Run("compare", "--teacher", dir["model"], "--data", data, "--masks", mask, "--student", dir["pruned"], "--window", "32");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n').Where(l => l.StartsWith("| ")).ToArray();
        Assert.Equal(4, lines.Length); // header, teacher, mask, student
        // The exported student is the masked teacher, so its row's numbers equal the mask's row's.
        Assert.Equal(lines[2].Split('|')[5..], lines[3].Split('|')[5..]);
        Assert.StartsWith("| pruned | student | 4 | n/a |", lines[3]);
    }

    [Fact]
    public void EvalRefusesMaskAndDropTogetherAsAUsageError()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        var r = CliProcess.Run("eval", "--model", dir["model"], "--data", WriteTokens(dir["d.bin"], 20), "--mask", mask, "--drop", "1");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--mask and --drop", r.Stderr);
    }

    [Fact]
    public void EvalRefusesAMaskForAnotherModelAndATeacherWithAnotherVocabulary()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        ExportTestModels.Write(dir["wide"], ExportTestModels.Spec(Architecture.Qwen3, true) with { Vocab = 128 });
        string data = WriteTokens(dir["d.bin"], 20);
        string foreign = ExportTestModels.WriteMask(dir["foreign.json"], RandomModel.Config(ExportTestModels.Spec(Architecture.Llama, true)));

        var r = CliProcess.Run("eval", "--model", dir["model"], "--data", data, "--mask", foreign);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{foreign}: model.config_hash", r.Stderr);

        r = CliProcess.Run("eval", "--model", dir["model"], "--data", data, "--teacher", dir["wide"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("vocab_size", r.Stderr);
        Assert.Contains(dir["model"], r.Stderr);
        Assert.Contains(dir["wide"], r.Stderr);
    }

    [Fact]
    public void ExportRefusesAnExistingOutputWithoutForce()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        Directory.CreateDirectory(dir["out"]);

        var r = CliProcess.Run("export", "--model", dir["model"], "--mask", mask, "--out", dir["out"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{dir["out"]}: already exists", r.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(dir["out"]));

        r = CliProcess.Run("export", "--model", dir["model"], "--mask", mask, "--out", dir["out"], "--force");
        Assert.Equal(0, r.ExitCode);
        Assert.True(File.Exists(Path.Combine(dir["out"], "model.safetensors")));
        Assert.Equal(2, CliProcess.Run("export", "--model", dir["model"], "--mask", mask, "--out", dir["x"], "--format", "onnx").ExitCode);
    }
}
