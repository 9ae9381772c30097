using Xunit;
using System.Text.Json.Nodes;
using E3.Model.Tokenization;
using E3.Tests.Support;

namespace E3.Tests.Distill;

/// <summary><c>e3 distill --teacher-cache</c>: the sparse top-K teacher drives the same loop, and only for its own data.</summary>
public sealed class TeacherCacheDistillTests
{
    static string WriteIds(string path, int[] ids)
    {
        File.WriteAllBytes(path, ids.SelectMany(i => BitConverter.GetBytes((uint)i)).ToArray());
        return path;
    }

    [Fact]
    public void DistillingFromACacheLowersTheLossAndRefusesOtherData()
    {
        using var dir = new TempDir("e3-distill-cache");
        var config = DistillTestModels.Write(dir["teacher"], layers: 3, seed: 6);
        string mask = DistillTestModels.WriteMask(dir["mask.json"], config, 0, 2);
        int[] ids = new ByteTokenizer().Encode(File.ReadAllText(DistillTestModels.WriteText(dir["data.txt"], 60)));
        string data = WriteIds(dir["data.bin"], ids);
        var cache = DistillTestModels.E3("teacher-cache", "--model", dir["teacher"], "--data", data, "--topk", "16", "--seq-len", "32", "--out", dir["cache.e3tk"], "--json");
        Assert.True(cache.ExitCode == 0, cache.Stderr);

        string[] common = ["--tokens", (30 * 4 * 32).ToString(), "--seq", "32", "--batch", "4", "--lr", "3e-3", "--warmup", "3", "--threads", "2", "--json"];
        var r = DistillTestModels.E3(["distill", "--teacher", dir["teacher"], "--mask", mask, "--data", data, "--teacher-cache", dir["cache.e3tk"], .. common, "--out", dir["out"]]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var history = JsonNode.Parse(r.Stdout)!["loss_history"]!.AsArray().Select(p => p![1]!.GetValue<double>()).ToArray();
        Assert.Equal(30, history.Length);
        // The KL of the pruned student to the cached teacher must fall; a teacher row read from the wrong shard would
        // not be learnable and the loss would stay flat.
        Assert.True(history.TakeLast(5).Average() < 0.7 * history.Take(5).Average(), $"loss {history.Take(5).Average():G4} -> {history.TakeLast(5).Average():G4}");

        string other = WriteIds(dir["other.bin"], ids.Reverse().ToArray());
        var bad = DistillTestModels.E3(["distill", "--teacher", dir["teacher"], "--mask", mask, "--data", other, "--teacher-cache", dir["cache.e3tk"], .. common, "--out", dir["out2"]]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("data_checksum", bad.Stderr);
        Assert.Contains(dir["cache.e3tk"], bad.Stderr);
        Assert.False(Directory.Exists(dir["out2"]));

        // The cache of another teacher (same config, other weights) for this one's data.
        DistillTestModels.Write(dir["other-teacher"], layers: 3, seed: 7);
        var wrong = DistillTestModels.E3(["distill", "--teacher", dir["other-teacher"], "--mask", mask, "--data", data, "--teacher-cache", dir["cache.e3tk"], .. common, "--out", dir["out3"]]);
        Assert.Equal(1, wrong.ExitCode);
        Assert.Contains($"{dir["cache.e3tk"]}: model id: 'teacher#", wrong.Stderr);
        Assert.Contains("the cache was made for another model than --teacher 'other-teacher#", wrong.Stderr);
        Assert.False(Directory.Exists(dir["out3"]));
    }
}
