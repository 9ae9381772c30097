using System.Text.Json.Nodes;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Pruning.Baselines;
using E3.Pruning.Masks;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Baselines;

/// <summary><c>e3 baseline</c> through the real executable: its masks, and its errors on bad input.</summary>
public sealed class BaselineCommandTests : IDisposable
{
    const int Layers = 8, Vocab = 256;
    readonly TempDir _dir = new("e3-baseline-cli");
    readonly string _model, _data, _outDir;

    public BaselineCommandTests()
    {
        _model = _dir["model"];
        RandomModel.Write(new RandomModelSpec { Layers = Layers, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 96, Vocab = Vocab, Seed = 8, InitStd = 0.1f }, _model);
        _data = WriteTokens("data.bin", Enumerable.Range(0, 400).Select(i => (uint)((i * 37 + 11) % Vocab)));
        _outDir = _dir["out"];
        Directory.CreateDirectory(_outDir);
    }

    string WriteTokens(string name, IEnumerable<uint> ids)
    {
        string path = _dir[name];
        File.WriteAllBytes(path, ids.SelectMany(BitConverter.GetBytes).ToArray());
        return path;
    }

    string[] Args(string method, string mask, params string[] extra) =>
        ["baseline", "--method", method, "--model", _model, "--out", mask, "--threads", "1", "--json", .. extra];

    [Fact]
    public void BiWritesTheMaskTheLibraryComputes()
    {
        string mask = Path.Combine(_outDir, "bi.json");
        var r = CliProcess.Run(Args("bi", mask, "--data", _data, "--prune", "0.25", "--tokens", "64", "--seq", "16", "--batch", "2", "--seed", "3"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!.AsObject();
        var written = MaskFile.Load(mask);
        using var backend = new CpuBackend(1);
        using var model = DecoderModel.Load(_model, backend);
        written.EnsureMatches(model.Config, mask);
        Assert.Equal("bi", written.Method);
        Assert.Equal(64, written.Tokens);
        Assert.Equal(3ul, written.Seed);
        Assert.Equal(2, written.Dropped.Count);
        Assert.Equal(written.Dropped, json["dropped"]!.AsArray().Select(n => n!.GetValue<int>()));

        // The same calibration windows and scores in process.
        var data = CalibrationSet.Sample(TokenFile.Read(_data).Ids, 16, 2, 64, 3, _data);
        var expected = BaselinePruner.Run(model, BaselineMethod.BlockInfluence, PruneTarget.FromRatio(Layers, 0.25), data, 3);
        Assert.Equal(expected.Mask.Kept, written.Kept);
        Assert.Equal(expected.Mask.Scores!, written.Scores!); // one thread both times, same code: bit-identical
    }

    [Fact]
    public void LastAndRandomNeedNoDataAndRandomRepeatsForItsSeed()
    {
        string last = Path.Combine(_outDir, "last.json"), a = Path.Combine(_outDir, "a.json"), b = Path.Combine(_outDir, "b.json");
        Assert.Equal(0, CliProcess.Run(Args("last", last, "--keep", "5")).ExitCode);
        Assert.Equal([5, 6, 7], MaskFile.Load(last).Dropped);
        Assert.Equal(0, CliProcess.Run(Args("random", a, "--keep", "5", "--seed", "17")).ExitCode);
        Assert.Equal(0, CliProcess.Run(Args("random", b, "--keep", "5", "--seed", "17")).ExitCode);
        var ma = MaskFile.Load(a);
        Assert.Equal(ma.Kept, MaskFile.Load(b).Kept);
        Assert.Equal(LayerChoice.Seeded(Layers, 3, 17), ma.Dropped);
        Assert.Equal(17ul, ma.Seed);
    }

    [Fact]
    public void DropOneKlRecordsItsGreedyPath()
    {
        string mask = Path.Combine(_outDir, "kl.json");
        var r = CliProcess.Run(Args("drop-one-kl", mask, "--data", _data, "--keep", "6", "--tokens", "32", "--seq", "16", "--batch", "2"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var m = MaskFile.Load(mask);
        var order = JsonNode.Parse(r.Stdout)!["greedy_order"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        Assert.Equal(order.Order(), m.Dropped);
        Assert.Equal(2, m.LossHistory.Count);
        // The first greedy step takes the layer with the smallest drop-one KL.
        Assert.Equal(Array.IndexOf(m.Scores!.ToArray(), m.Scores!.Min()), order[0]);
        Assert.Equal(m.Scores![order[0]], m.LossHistory[0].Loss);
    }

    [Theory]
    [InlineData("keep-all", "--keep: 8 is out of range 1..7")]
    [InlineData("keep-none", "--keep: 0 is out of range 1..7")]
    [InlineData("empty", "empty.bin: holds 0 tokens")]
    [InlineData("beyond-vocab", "token at index 5 is 256, outside the vocabulary [0, 256)")]
    [InlineData("no-data", "--data is required by --method bi")] // a usage error: exit 2
    [InlineData("short", "short.bin: holds 10 tokens; a window of 16 needs at least 17")]
    public void BadInputIsANamedErrorAndWritesNothing(string problem, string message)
    {
        string mask = Path.Combine(_outDir, "mask.json");
        string[] extra = problem switch
        {
            "keep-all" => ["--data", _data, "--keep", "8"],
            "keep-none" => ["--data", _data, "--keep", "0"],
            "empty" => ["--data", WriteTokens("empty.bin", []), "--prune", "0.25"],
            "beyond-vocab" => ["--data", WriteTokens("beyond.bin", Enumerable.Range(0, 100).Select(i => i == 5 ? (uint)Vocab : 1u)), "--prune", "0.25"],
            "no-data" => ["--prune", "0.25"],
            _ => ["--data", WriteTokens("short.bin", Enumerable.Repeat(3u, 10)), "--prune", "0.25", "--seq", "16"],
        };
        var r = CliProcess.Run(Args("bi", mask, extra));
        Assert.Equal(problem == "no-data" ? 2 : 1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.StartsWith("e3: error:", r.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(_outDir));
    }

    public void Dispose() => _dir.Dispose();
}
