using System.Text.Json.Nodes;
using E3.Model;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Distill;

/// <summary>
/// <c>e3 distill --student DIR</c> with a student of its own depth, as <c>e3 export</c> writes a pruned model: the
/// student runs every one of its layers against the deeper teacher.
/// </summary>
public sealed class SeparateStudentTests
{
    [Fact]
    public void AnExportedPrunedStudentIsDistilledFromItsTeacher()
    {
        using var dir = new TempDir("e3-distill-student");
        var config = DistillTestModels.Write(dir["teacher"], layers: 4, seed: 3);
        string mask = DistillTestModels.WriteMask(dir["mask.json"], config, 0, 1, 3);
        string data = DistillTestModels.WriteText(dir["data.txt"], 40);
        var export = DistillTestModels.E3("export", "--model", dir["teacher"], "--mask", mask, "--out", dir["pruned"]);
        Assert.True(export.ExitCode == 0, export.Stderr);
        Assert.Equal(3, ModelConfig.Load(dir["pruned"]).NumLayers);

        var r = DistillTestModels.E3("distill", "--teacher", dir["teacher"], "--student", dir["pruned"], "--data", data, "--tokens", "64",
            "--seq", "16", "--batch", "2", "--warmup", "1", "--threads", "1", "--json", "--out", dir["healed"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal(3, ModelConfig.Load(dir["healed"]).NumLayers);
        double first = (double)JsonNode.Parse(r.Stdout)!["loss_history"]![0]![1]!;
        Assert.True(double.IsFinite(first) && first > 0, $"first loss {first}");
    }
}
