using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.IO;
using E3.Pruning.Masks;
using E3.Tests.IO;

namespace E3.Tests.Export;

/// <summary>Small random checkpoints (6 layers) in the layouts an export must handle, with the side files it copies.</summary>
internal static class ExportTestModels
{
    /// <summary>The layers every export test keeps: 1 and 4 are dropped.</summary>
    public static readonly int[] Kept = [0, 2, 3, 5];

    /// <summary>Side files and their (distinct) contents, so a copy can be checked byte for byte.</summary>
    public static readonly IReadOnlyDictionary<string, string> SideFiles = new Dictionary<string, string>
    {
        ["tokenizer_config.json"] = "{\"model_max_length\": 4096, \"tokenizer_class\": \"Qwen2Tokenizer\"}",
        ["special_tokens_map.json"] = "{\"eos_token\": \"<|endoftext|>\"}",
        ["generation_config.json"] = "{\"do_sample\": false, \"eos_token_id\": 1}",
        ["merges.txt"] = "#version: 0.2\nĠ t\n",
    };

    public static RandomModelSpec Spec(Architecture architecture, bool tied, string dtype = "float32", int seed = 7) => new()
    {
        Architecture = architecture, Layers = 6, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = 96,
        TieEmbeddings = tied, Dtype = dtype, Seed = seed,
    };

    /// <summary>
    /// Writes a random model into <paramref name="dir"/> with the side files; with <paramref name="shardBytes"/> its
    /// tensors are re-written as shards of at most that many data bytes (and model.safetensors removed).
    /// With <paramref name="slidingWindowTail"/> the config marks layers 3..5 as sliding-window layers
    /// (max_window_layers = 3), so the export's rewrite of both fields can be checked.
    /// </summary>
    public static ModelConfig Write(string dir, RandomModelSpec spec, long? shardBytes = null, bool slidingWindowTail = false)
    {
        RandomModel.Write(spec, dir);
        foreach (var (name, text) in SideFiles) File.WriteAllText(Path.Combine(dir, name), text);
        if (slidingWindowTail)
        {
            string configPath = Path.Combine(dir, "config.json");
            var json = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
            json["max_window_layers"] = 3;
            json["layer_types"] = new JsonArray(Enumerable.Range(0, spec.Layers)
                .Select(i => (JsonNode?)JsonValue.Create(i < 3 ? "full_attention" : "sliding_attention")).ToArray());
            File.WriteAllText(configPath, json.ToJsonString());
        }
        if (shardBytes is long max)
        {
            string single = Path.Combine(dir, "model.safetensors");
            var raw = RawSafeTensors.Parse(File.ReadAllBytes(single));
            var tensors = raw.Tensors.Select(t => new TensorToWrite(t.Key, Enum.Parse<SafeTensorsDType>(t.Value.DType), t.Value.Shape, t.Value.Bytes)).ToList();
            SafeTensorsWriter.WriteSharded(dir, tensors, max, raw.Metadata);
            File.Delete(single);
        }
        return ModelConfig.Load(dir);
    }

    /// <summary>Writes mask.json for <paramref name="config"/> keeping <see cref="Kept"/> and returns its path.</summary>
    public static string WriteMask(string path, ModelConfig config, IEnumerable<int>? kept = null)
    {
        MaskFile.For(config, "test", kept ?? Kept).Save(path);
        return path;
    }

    /// <summary>Every tensor of a checkpoint folder (single file or shards), read with the test-side parser.</summary>
    public static Dictionary<string, RawSafeTensors.RawTensor> ReadAll(string dir) =>
        Directory.GetFiles(dir, "*.safetensors")
            .SelectMany(f => RawSafeTensors.Parse(File.ReadAllBytes(f)).Tensors)
            .ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
}
