using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Backends.Numerics;
using E3.Model.Decoder;
using E3.Model.IO;

namespace E3.Model;

/// <summary>Shape of a random model made by <c>e3 model init</c>.</summary>
public sealed record RandomModelSpec
{
    public Architecture Architecture { get; init; } = Architecture.Qwen3;
    public int Layers { get; init; } = 4;
    public int Hidden { get; init; } = 64;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    public int HeadDim { get; init; } = 16;
    public int Intermediate { get; init; } = 128;
    public int Vocab { get; init; } = 256;
    public bool TieEmbeddings { get; init; }
    public int Seed { get; init; }
    /// <summary>Storage dtype of every tensor: "float32" or "bfloat16".</summary>
    public string Dtype { get; init; } = "float32";
    public float InitStd { get; init; } = 0.02f;
    public float RopeTheta { get; init; } = 1_000_000f;
    public float RmsNormEps { get; init; } = 1e-6f;
    public int MaxPositions { get; init; } = 4096;
}

/// <summary>Writes a seeded random model in the exact Hugging Face layout: config.json + model.safetensors.</summary>
public static class RandomModel
{
    public static ModelConfig Config(RandomModelSpec s)
    {
        string type = s.Architecture switch { Architecture.Qwen3 => "qwen3", Architecture.Qwen2 => "qwen2", _ => "llama" };
        string cls = s.Architecture switch { Architecture.Qwen3 => "Qwen3ForCausalLM", Architecture.Qwen2 => "Qwen2ForCausalLM", _ => "LlamaForCausalLM" };
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray(cls),
            ["model_type"] = type,
            ["vocab_size"] = s.Vocab,
            ["hidden_size"] = s.Hidden,
            ["intermediate_size"] = s.Intermediate,
            ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads,
            ["num_key_value_heads"] = s.KvHeads,
            ["head_dim"] = s.HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = s.MaxPositions,
            ["rms_norm_eps"] = s.RmsNormEps,
            ["rope_theta"] = s.RopeTheta,
            ["tie_word_embeddings"] = s.TieEmbeddings,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["initializer_range"] = s.InitStd,
            ["torch_dtype"] = s.Dtype,
            ["use_cache"] = true,
            ["bos_token_id"] = 0,
            ["eos_token_id"] = Math.Min(1, s.Vocab - 1),
        };
        if (s.Architecture != Architecture.Llama)
        {
            json["use_sliding_window"] = false;
            json["sliding_window"] = null;
            json["max_window_layers"] = s.Layers;
            json["layer_types"] = new JsonArray(Enumerable.Repeat<JsonNode?>("full_attention", s.Layers).Select(n => (JsonNode?)JsonValue.Create("full_attention")).ToArray());
        }
        return ModelConfig.Parse(json);
    }

    /// <summary>Creates <paramref name="directory"/> atomically (temp folder, then rename) and returns its config.</summary>
    public static ModelConfig Write(RandomModelSpec spec, string directory)
    {
        var config = Config(spec);
        var target = Path.GetFullPath(directory);
        if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
            throw new IOException($"{target}: output folder exists and is not empty");
        var parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(target)}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            bool bf16 = spec.Dtype == "bfloat16";
            if (!bf16 && spec.Dtype != "float32") throw new ArgumentException($"dtype '{spec.Dtype}' must be float32 or bfloat16");
            var expected = WeightNames.Expected(config).ToList();
            var tensors = new TensorToWrite[expected.Count];
            // Every tensor, and every 1M-value chunk of it, has its own seed: the result does not depend on how many
            // threads fill it, and an 8B-parameter model fills in seconds rather than minutes.
            Parallel.For(0, expected.Count, t =>
            {
                var (name, shape) = expected[t];
                long n = shape.Aggregate(1L, (a, b) => a * b);
                var values = new float[n];
                bool isNorm = name.EndsWith("norm.weight", StringComparison.Ordinal);
                const int Chunk = 1 << 20;
                Parallel.For(0, (int)((n + Chunk - 1) / Chunk), c =>
                {
                    var rng = new Random(ChunkSeed(spec.Seed, t, c));
                    long end = Math.Min(n, (long)(c + 1) * Chunk);
                    for (long i = (long)c * Chunk; i < end; i++)
                        values[i] = isNorm ? 1f + 0.1f * Normal(rng) : spec.InitStd * Normal(rng);
                });
                byte[] data;
                if (bf16)
                {
                    var bits = new ushort[n];
                    BFloat16.FromSingle(values, bits);
                    data = MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
                }
                else data = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
                tensors[t] = new TensorToWrite(name, bf16 ? SafeTensorsDType.BF16 : SafeTensorsDType.F32, shape, data);
            });
            SafeTensorsWriter.Write(Path.Combine(tmp, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            File.WriteAllText(Path.Combine(tmp, "config.json"), config.Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(target)) Directory.Delete(target);
            Directory.Move(tmp, target);
        }
        catch
        {
            if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
            throw;
        }
        return ModelConfig.Load(target);
    }

    /// <summary>A stable seed per (model seed, tensor, chunk); HashCode is randomised per process, so it will not do.</summary>
    static int ChunkSeed(int seed, int tensor, int chunk)
    {
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)tensor << 32 ^ (uint)chunk;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)(z ^ (z >> 31));
    }

    static float Normal(Random rng)
    {
        // Box–Muller on (0,1]: never log(0).
        double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
    }
}
