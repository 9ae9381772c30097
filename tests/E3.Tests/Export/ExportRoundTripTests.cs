using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Pruning.Export;
using E3.Pruning.Masks;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Export;

public class ExportRoundTripTests
{
    public enum Layout { Single, Sharded }

    public static TheoryData<Architecture, bool, string, Layout> Cases => new()
    {
        { Architecture.Qwen3, true, "float32", Layout.Single },
        { Architecture.Qwen3, false, "float32", Layout.Single },
        { Architecture.Llama, false, "float32", Layout.Single },
        { Architecture.Qwen2, true, "float32", Layout.Single },
        { Architecture.Qwen3, false, "float32", Layout.Sharded },
        { Architecture.Qwen3, true, "bfloat16", Layout.Sharded },
    };

    // Shards of at most 40 KB of tensor data: the 6-layer test model (~150 KB fp32) needs several, and the embedding
    // (96 x 32 x 4 = 12 KB) fits in one.
    const long ShardBytes = 40_000;

    [Theory]
    [MemberData(nameof(Cases))]
    public void TheExportRunsLikeTheMaskedOriginal(Architecture architecture, bool tied, string dtype, Layout layout)
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(architecture, tied, dtype), layout == Layout.Sharded ? ShardBytes : null);
        string maskPath = ExportTestModels.WriteMask(dir["mask.json"], config);

        var result = new CheckpointExporter().Export(dir["model"], maskPath, dir["out"]);

        Assert.Equal(layout == Layout.Sharded, result.Sharded);
        Assert.Equal(ExportTestModels.Kept, result.Kept);
        using var backend = new CpuBackend(1);
        using var original = DecoderModel.Load(dir["model"], backend);
        using var exported = DecoderModel.Load(dir["out"], backend);
        Assert.Equal(4, exported.Config.NumLayers);
        int[] tokens = Enumerable.Range(0, 24).Select(i => (i * 37 + 5) % config.VocabSize).ToArray();
        float[] expected = original.Forward(tokens, MaskFile.Load(maskPath).ToLayerMask());
        float[] actual = exported.Forward(tokens);
        // Bit-identical: the export holds the same bytes for every kept tensor, and the masked original skips dropped
        // layers outright (no gate multiply), so both run exactly the same operations on the same values.
        Assert.Equal(expected, actual);
        // The dropped layers matter: otherwise the comparison above could not tell a wrong export from a right one.
        Assert.NotEqual(expected, original.Forward(tokens));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void AnIndependentReaderSeesRenumberedCopiesOfTheKeptTensors(Architecture architecture, bool tied, string dtype, Layout layout)
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(architecture, tied, dtype), layout == Layout.Sharded ? ShardBytes : null);
        var progress = new List<(int Done, int Total, long Bytes)>();
        new CheckpointExporter { Progress = (done, total, bytes) => progress.Add((done, total, bytes)) }
            .Export(dir["model"], ExportTestModels.WriteMask(dir["mask.json"], config), dir["out"]);

        var source = ExportTestModels.ReadAll(dir["model"]);
        var output = ExportTestModels.ReadAll(dir["out"]);
        // One report per tensor, ending at every tensor and every data byte the independent reader finds.
        Assert.Equal(Enumerable.Range(1, output.Count), progress.Select(p => p.Done));
        Assert.All(progress, p => Assert.Equal(output.Count, p.Total));
        Assert.Equal(output.Values.Sum(t => (long)t.Bytes.Length), progress[^1].Bytes);
        // The expected names, derived here from the source names alone: dropped layers 1 and 4 vanish, 2→1, 3→2, 5→3.
        int[] newIndex = [0, -1, 1, 2, -1, 3];
        var expected = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string name in source.Keys)
        {
            var m = Regex.Match(name, @"^model\.layers\.(\d+)\.(.+)$");
            if (!m.Success) expected[name] = name;
            else if (newIndex[int.Parse(m.Groups[1].Value)] is var n and >= 0) expected[$"model.layers.{n}.{m.Groups[2].Value}"] = name;
        }
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), output.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(!tied, output.ContainsKey("lm_head.weight"));
        foreach (var (name, tensor) in output)
        {
            var from = source[expected[name]];
            Assert.Equal(from.DType, tensor.DType);
            Assert.Equal(dtype == "bfloat16" ? "BF16" : "F32", tensor.DType);
            Assert.Equal(from.Shape, tensor.Shape);
            Assert.Equal(from.Bytes, tensor.Bytes);
        }
        foreach (var (name, text) in ExportTestModels.SideFiles)
            Assert.Equal(text, File.ReadAllText(Path.Combine(dir["out"], name)));
        if (layout == Layout.Sharded) CheckIndex(dir["model"], dir["out"], output);
        else Assert.Equal(["config.json", "generation_config.json", "merges.txt", "model.safetensors", "special_tokens_map.json", "tokenizer_config.json"],
            Directory.GetFiles(dir["out"]).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    static void CheckIndex(string sourceDir, string outDir, Dictionary<string, E3.Tests.IO.RawSafeTensors.RawTensor> output)
    {
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "model.safetensors.index.json")));
        var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        Assert.Equal(output.Keys.Order(StringComparer.Ordinal), map.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(output.Values.Sum(t => (long)t.Bytes.Length), index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        long largestSourceShard = Directory.GetFiles(sourceDir, "*.safetensors")
            .Max(f => E3.Tests.IO.RawSafeTensors.Parse(File.ReadAllBytes(f)).Tensors.Sum(t => (long)t.Value.Bytes.Length));
        var shards = Directory.GetFiles(outDir, "*.safetensors");
        Assert.True(shards.Length > 1, $"{shards.Length} shard(s): the test model should need several");
        foreach (string shard in shards)
        {
            var held = E3.Tests.IO.RawSafeTensors.Parse(File.ReadAllBytes(shard)).Tensors;
            string name = Path.GetFileName(shard);
            Assert.Matches($@"^model-0000\d-of-0000{shards.Length}\.safetensors$", name);
            Assert.Equal(map.Where(e => e.Value == name).Select(e => e.Key).Order(StringComparer.Ordinal), held.Select(t => t.Key).Order(StringComparer.Ordinal));
            // Same max shard size policy: no shard is larger than the source's largest, unless it is one tensor.
            Assert.True(held.Count == 1 || held.Sum(t => (long)t.Value.Bytes.Length) <= largestSourceShard);
        }
    }

    [Fact]
    public void ConfigKeepsEveryOtherFieldAndRewritesThePerLayerOnes()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, false), slidingWindowTail: true);
        new CheckpointExporter().Export(dir["model"], ExportTestModels.WriteMask(dir["mask.json"], config), dir["out"]);

        var source = JsonNode.Parse(File.ReadAllText(dir["model/config.json"]))!.AsObject();
        var output = JsonNode.Parse(File.ReadAllText(dir["out/config.json"]))!.AsObject();
        Assert.Equal(source.Select(p => p.Key), output.Select(p => p.Key));
        string[] rewritten = ["num_hidden_layers", "layer_types", "max_window_layers"];
        foreach (var (key, value) in source.Where(p => !rewritten.Contains(p.Key)))
            Assert.True(JsonNode.DeepEquals(value, output[key]), $"{key}: {value?.ToJsonString()} became {output[key]?.ToJsonString()}");
        Assert.Equal(4, (int)output["num_hidden_layers"]!);
        // Kept layers 0, 2 (full) and 3, 5 (sliding); the boundary stays between the same layers: two kept layers are below 3.
        Assert.Equal(["full_attention", "full_attention", "sliding_attention", "sliding_attention"], output["layer_types"]!.AsArray().Select(n => (string)n!));
        Assert.Equal(2, (int)output["max_window_layers"]!);
        Assert.False((bool)output["use_sliding_window"]!);
    }

    [Fact]
    public void KeepingEveryLayerCopiesTheCheckpoint()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Llama, true));
        new CheckpointExporter().Export(dir["model"], ExportTestModels.WriteMask(dir["mask.json"], config, Enumerable.Range(0, 6)), dir["out"]);
        var source = ExportTestModels.ReadAll(dir["model"]);
        var output = ExportTestModels.ReadAll(dir["out"]);
        Assert.Equal(source.Keys.Order(StringComparer.Ordinal), output.Keys.Order(StringComparer.Ordinal));
        Assert.All(source, t => Assert.Equal(t.Value.Bytes, output[t.Key].Bytes));
    }
}
