using System.Buffers.Binary;
using System.Text;
using E3.Tests.Reference;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.ReferenceTests;

public class ReferenceCheckpointTests
{
    [Theory]
    [InlineData("qwen3", true)]
    [InlineData("llama", false)]
    [InlineData("qwen2", false)]
    public void Float32StorageRoundTripsExactlyInBothLoadDTypes(string modelType, bool tied)
    {
        using var folder = new ScratchFolder();
        var config = TinyModels.Config(modelType, tied, attentionBias: modelType == "llama");
        var written = ReferenceCheckpointWriter.WriteRandom(folder.Path, config, seed: 4);
        using var single = ReferenceCheckpoint.Load(folder.Path);
        using var wide = ReferenceCheckpoint.Load(folder.Path, ScalarType.Float64);
        Assert.Equal(config, single.Config);
        Assert.Equal(written.Select(t => t.Name).Order(), single.TensorNames.Order());
        Assert.Equal(!tied, single.TensorNames.Contains("lm_head.weight"));
        foreach (var tensor in written)
        {
            Assert.Equal(tensor.Shape, single.Weight(tensor.Name).shape);
            Assert.Equal(tensor.Values, single.Weight(tensor.Name).data<float>().ToArray());
            Assert.Equal(tensor.Values.Select(v => (double)v), wide.Weight(tensor.Name).data<double>().ToArray());
        }
    }

    [Fact]
    public void WriterUsesTheExactTransformersNames()
    {
        var names = ReferenceLayout.Expected(TinyModels.Config("qwen3", tied: false, layers: 1)).Select(s => s.Name);
        Assert.Equal(
            [
                "model.embed_tokens.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.weight",
                "model.layers.0.self_attn.v_proj.weight",
                "model.layers.0.self_attn.o_proj.weight",
                "model.layers.0.self_attn.q_norm.weight",
                "model.layers.0.self_attn.k_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
                "model.layers.0.mlp.gate_proj.weight",
                "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.mlp.down_proj.weight",
                "model.norm.weight",
                "lm_head.weight",
            ],
            names);
        var qwen2 = ReferenceLayout.Expected(TinyModels.Config("qwen2", tied: true, layers: 1)).Select(s => s.Name).ToHashSet();
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", qwen2);
        Assert.Contains("model.layers.0.self_attn.v_proj.bias", qwen2);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", qwen2);
        Assert.DoesNotContain("lm_head.weight", qwen2);
    }

    [Fact]
    public void RandomWeightsHaveTheRequestedSpread()
    {
        using var folder = new ScratchFolder();
        var written = ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("llama", tied: false, hidden: 64), seed: 1);
        var projections = written.Where(t => t.Name.EndsWith("proj.weight")).SelectMany(t => t.Values).ToArray();
        var norms = written.Where(t => t.Name.EndsWith("norm.weight")).SelectMany(t => t.Values).ToArray();
        // ~30k projection samples: the sample std is within 2% of 0.02 with overwhelming probability (sd of s/σ ≈ 0.4%).
        Assert.InRange(StandardDeviation(projections, 0), 0.0196, 0.0204);
        // ~260 norm samples: mean 1 ± 0.02 (5 sd) and std 0.1 ± 25%.
        Assert.InRange(norms.Average(), 0.98, 1.02);
        Assert.InRange(StandardDeviation(norms, 1), 0.075, 0.125);
        // Same seed, same model; different seed, different model.
        using var again = new ScratchFolder();
        Assert.Equal(written[3].Values, ReferenceCheckpointWriter.WriteRandom(again.Path, TinyModels.Config("llama", false, hidden: 64), seed: 1)[3].Values);
        Assert.NotEqual(written[3].Values, ReferenceCheckpointWriter.WriteRandom(again.Path, TinyModels.Config("llama", false, hidden: 64), seed: 2)[3].Values);
    }

    [Theory]
    [InlineData(ReferenceStorage.BF16, ScalarType.BFloat16)]
    [InlineData(ReferenceStorage.F16, ScalarType.Float16)]
    public void HalfStoragesMatchLibtorchRounding(ReferenceStorage storage, ScalarType torchType)
    {
        // Random values plus the awkward ones: exact ties (1 + half an ulp of each format), overflow, tiny, NaN, ±inf.
        float[] special = [1f + 1f / 256f, 1f + 3f / 256f, 1f + 1f / 2048f, 1f + 3f / 2048f, 70000f, 1e-6f, 1e-30f, -0f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 3.3e38f];
        var random = new Random(7);
        var values = special.Concat(Enumerable.Range(0, 500).Select(_ => (float)((random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-8, 6))))).ToArray();
        using var folder = new ScratchFolder();
        string path = Path.Combine(folder.Path, "t.safetensors");
        SafeTensorsWriter.Write(path, [new StoredTensor("x", [values.Length], values)], storage);
        var loaded = LoadSingle(path);
        using var expected = torch.tensor(values).to(torchType).to(ScalarType.Float32);
        // Bitwise, except that any NaN payload is acceptable.
        var want = expected.data<float>().ToArray();
        for (int i = 0; i < values.Length; i++)
        {
            Assert.True(
                BitConverter.SingleToInt32Bits(want[i]) == BitConverter.SingleToInt32Bits(loaded[i]) || (float.IsNaN(want[i]) && float.IsNaN(loaded[i])),
                $"{storage} of {values[i]:R}: libtorch {want[i]:R}, reader {loaded[i]:R}");
        }
    }

    [Fact]
    public void ShardedCheckpointLoadsLikeTheSingleFile()
    {
        using var single = new ScratchFolder();
        using var sharded = new ScratchFolder();
        var config = TinyModels.Config("qwen3", tied: false);
        ReferenceCheckpointWriter.WriteRandom(single.Path, config, seed: 6, ReferenceStorage.BF16);
        ReferenceCheckpointWriter.WriteRandom(sharded.Path, config, seed: 6, ReferenceStorage.BF16, shards: 3);
        Assert.False(File.Exists(Path.Combine(sharded.Path, ReferenceCheckpoint.WeightsFileName)));
        Assert.Equal(3, Directory.GetFiles(sharded.Path, "model-0000?-of-00003.safetensors").Length);
        using var a = ReferenceCheckpoint.Load(single.Path);
        using var b = ReferenceCheckpoint.Load(sharded.Path);
        Assert.Equal(a.TensorNames.Order(), b.TensorNames.Order());
        foreach (string name in a.TensorNames)
        {
            Assert.Equal(a.Weight(name).data<float>().ToArray(), b.Weight(name).data<float>().ToArray());
        }

        // The decoder cannot tell them apart either.
        var tokens = TinyModels.Tokens(4, seed: 1);
        using var logitsA = TorchReferenceDecoder.Forward(a, tokens);
        using var logitsB = TorchReferenceDecoder.Forward(b, tokens);
        Assert.Equal(logitsA.data<float>().ToArray(), logitsB.data<float>().ToArray());
    }

    [Fact]
    public void MissingOrMisshapenTensorsAreNamed()
    {
        using var folder = new ScratchFolder();
        var config = TinyModels.Config("llama", tied: false);
        var tensors = ReferenceCheckpointWriter.WriteRandom(folder.Path, config, seed: 1);

        var withoutNorm = tensors.Where(t => t.Name != "model.layers.1.post_attention_layernorm.weight").ToList();
        ReferenceCheckpointWriter.Write(folder.Path, config, withoutNorm, ReferenceStorage.F32);
        var missing = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("'model.layers.1.post_attention_layernorm.weight' is missing", missing.Message);

        var transposed = tensors.Select(t => t.Name == "model.layers.0.mlp.down_proj.weight" ? t with { Shape = [t.Shape[1], t.Shape[0]] } : t).ToList();
        ReferenceCheckpointWriter.Write(folder.Path, config, transposed, ReferenceStorage.F32);
        var shape = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("'model.layers.0.mlp.down_proj.weight' has shape [40, 32]; config.json implies [32, 40]", shape.Message);
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        using var folder = new ScratchFolder();
        var noConfig = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("config.json", noConfig.Message);

        TinyModels.Config("qwen2", tied: true).Save(Path.Combine(folder.Path, "config.json"));
        var noWeights = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("model.safetensors.index.json", noWeights.Message);

        ReferenceCheckpointWriter.WriteRandom(folder.Path, TinyModels.Config("qwen2", tied: true), seed: 1, shards: 2);
        File.Delete(Path.Combine(folder.Path, "model-00002-of-00002.safetensors"));
        var noShard = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("names shard \"model-00002-of-00002.safetensors\", which does not exist", noShard.Message);
    }

    [Fact]
    public void InconsistentShardsAreNamed()
    {
        using var folder = new ScratchFolder();
        var config = TinyModels.Config("llama", tied: true);
        var tensors = ReferenceCheckpointWriter.WriteRandom(folder.Path, config, seed: 1, shards: 2);
        string index = Path.Combine(folder.Path, ReferenceCheckpoint.IndexFileName);
        string indexText = File.ReadAllText(index);

        var map = System.Text.Json.Nodes.JsonNode.Parse(indexText)!;
        map["weight_map"]!["model.extra.weight"] = "model-00001-of-00002.safetensors";
        File.WriteAllText(index, map.ToJsonString());
        var unknown = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("'weight_map.model.extra.weight' has value \"model-00001-of-00002.safetensors\"", unknown.Message);

        File.WriteAllText(index, indexText);
        string second = Path.Combine(folder.Path, "model-00002-of-00002.safetensors");
        SafeTensorsWriter.Write(second, [tensors[0], tensors[^1]], ReferenceStorage.F32);
        var twice = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("'model.embed_tokens.weight' is stored in more than one shard", twice.Message);

        map = System.Text.Json.Nodes.JsonNode.Parse(indexText)!;
        map["weight_map"]!["model.norm.weight"] = "../elsewhere.safetensors";
        File.WriteAllText(index, map.ToJsonString());
        var escape = Assert.Throws<ReferenceCheckpointException>(() => ReferenceCheckpoint.Load(folder.Path));
        Assert.Contains("expected a shard file name", escape.Message);
    }

    [Theory]
    [InlineData("""{"x": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}}""", 2, "'x.dtype' has value \"I8\"")]
    [InlineData("""{"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}""", 8, "'x.data_offsets' has value [0, 4]")]
    [InlineData("""{"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}""", 8, "'x.data_offsets' has value [0, 16]")]
    [InlineData("""{"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", 4, "'x.shape' has value [-1]")]
    [InlineData("""{"x": {"dtype": "F32", "shape": [1]}}""", 4, "'x' has header entry")]
    [InlineData("""{"x": """, 4, "'header' is not valid JSON")]
    public void CorruptSafeTensorsNameFileFieldAndValue(string header, int dataBytes, string expected)
    {
        using var folder = new ScratchFolder();
        string path = Path.Combine(folder.Path, "bad.safetensors");
        var headerBytes = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + headerBytes.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)headerBytes.Length);
        headerBytes.CopyTo(file, 8);
        File.WriteAllBytes(path, file);
        var error = Assert.Throws<ReferenceCheckpointException>(() => LoadSingle(path));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith(path, error.Message);
    }

    [Fact]
    public void TruncatedHeaderIsRejected()
    {
        using var folder = new ScratchFolder();
        string path = Path.Combine(folder.Path, "short.safetensors");
        var file = new byte[20];
        BinaryPrimitives.WriteUInt64LittleEndian(file, 1000);
        File.WriteAllBytes(path, file);
        var error = Assert.Throws<ReferenceCheckpointException>(() => LoadSingle(path));
        Assert.Contains("'header length' has value 1000, but the file has 20 bytes", error.Message);
        File.WriteAllBytes(path, new byte[3]);
        Assert.Contains("only 3 bytes", Assert.Throws<ReferenceCheckpointException>(() => LoadSingle(path)).Message);
    }

    /// <summary>Loads the one tensor "x" of a hand-made file through a checkpoint folder's reader path.</summary>
    private static float[] LoadSingle(string path)
    {
        var tensors = SafeTensorsReader.Load(path, ScalarType.Float32);
        try
        {
            return tensors["x"].data<float>().ToArray();
        }
        finally
        {
            foreach (var tensor in tensors.Values)
            {
                tensor.Dispose();
            }
        }
    }

    private static double StandardDeviation(float[] values, double mean) =>
        Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / values.Length);
}
