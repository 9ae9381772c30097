using System.Buffers;
using System.Numerics.Tensors;
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
    /// <summary>Decoder family; sets model_type and architectures.</summary>
    public Architecture Architecture { get; init; } = Architecture.Qwen3;
    /// <summary>num_hidden_layers.</summary>
    public int Layers { get; init; } = 4;
    /// <summary>hidden_size.</summary>
    public int Hidden { get; init; } = 64;
    /// <summary>num_attention_heads.</summary>
    public int Heads { get; init; } = 4;
    /// <summary>num_key_value_heads; must divide <see cref="Heads"/>.</summary>
    public int KvHeads { get; init; } = 2;
    /// <summary>head_dim; positive and even.</summary>
    public int HeadDim { get; init; } = 16;
    /// <summary>intermediate_size.</summary>
    public int Intermediate { get; init; } = 128;
    /// <summary>vocab_size.</summary>
    public int Vocab { get; init; } = 256;
    /// <summary>tie_word_embeddings: when true the checkpoint has no separate lm_head.</summary>
    public bool TieEmbeddings { get; init; }
    /// <summary>Seed of every tensor's values: the same spec writes the same bytes.</summary>
    public int Seed { get; init; }
    /// <summary>Storage dtype of every tensor: "float32" or "bfloat16".</summary>
    public string Dtype { get; init; } = "float32";
    /// <summary>Standard deviation of the normal weights (initializer_range); norm weights are 1 + 0.1·z instead.</summary>
    public float InitStd { get; init; } = 0.02f;
    /// <summary>rope_theta.</summary>
    public float RopeTheta { get; init; } = 1_000_000f;
    /// <summary>rms_norm_eps.</summary>
    public float RmsNormEps { get; init; } = 1e-6f;
    /// <summary>max_position_embeddings.</summary>
    public int MaxPositions { get; init; } = 4096;
}

/// <summary>Writes a seeded random model in the exact Hugging Face layout: config.json + model.safetensors.</summary>
public static class RandomModel
{
    /// <summary>The config.json <see cref="Write"/> would write for <paramref name="s"/>, parsed; writes nothing.</summary>
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
        // "m/" names the folder m, not a folder inside it: without the trim the temp folder would be made inside the target.
        var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
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
            var dtype = bf16 ? SafeTensorsDType.BF16 : SafeTensorsDType.F32;
            var layouts = WeightNames.Expected(config)
                .Select(e => new TensorLayout(e.Name, dtype, e.Shape,
                    ShapeFormat.CheckedProduct(e.Shape, dtype.SizeInBytes()) ?? throw new ArgumentException($"tensor '{e.Name}' has more than 2^63 bytes")))
                .ToList();
            // One buffer for every tensor: a batch of blocks, or the largest tensor when that is smaller.
            long largest = layouts.Max(l => l.ByteLength);
            var buffer = new byte[Math.Min(largest, (long)BlocksPerBatch * SeededNormal.BlockValues * dtype.SizeInBytes())];
            SafeTensorsWriter.WriteStreamed(Path.Combine(tmp, "model.safetensors"), layouts,
                (t, stream) => WriteTensor(spec, t, layouts[t], buffer, stream), new Dictionary<string, string> { ["format"] = "pt" });
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

    // Blocks filled in parallel before each write: enough to keep every core busy, a few MB each.
    static readonly int BlocksPerBatch = Math.Max(1, 2 * Environment.ProcessorCount);

    /// <summary>
    /// Tensor <paramref name="index"/>'s values, block by block (<see cref="SeededNormal"/>): std × z for weights,
    /// 1 + 0.1 z for norms. Blocks are filled in parallel a batch at a time and written in order, so the result does not
    /// depend on the thread count and memory holds one batch (in <paramref name="buffer"/>), not the model.
    /// </summary>
    static void WriteTensor(RandomModelSpec spec, int index, TensorLayout layout, byte[] buffer, Stream stream)
    {
        bool bf16 = layout.DType == SafeTensorsDType.BF16;
        bool isNorm = layout.Name.EndsWith("norm.weight", StringComparison.Ordinal);
        float scale = isNorm ? 0.1f : spec.InitStd, shift = isNorm ? 1f : 0f;
        ulong key = SeededNormal.Key(spec.Seed, index);
        int elementBytes = layout.DType.SizeInBytes();
        long count = layout.ByteLength / elementBytes;
        long blocks = (count + SeededNormal.BlockValues - 1) / SeededNormal.BlockValues;
        for (long first = 0; first < blocks; first += BlocksPerBatch)
        {
            int inBatch = (int)Math.Min(BlocksPerBatch, blocks - first);
            long batchStart = first * SeededNormal.BlockValues;
            int batchValues = (int)Math.Min(count - batchStart, (long)inBatch * SeededNormal.BlockValues);
            Parallel.For(0, inBatch, i =>
            {
                int offset = i * SeededNormal.BlockValues;
                int length = Math.Min(SeededNormal.BlockValues, batchValues - offset);
                if (bf16)
                {
                    float[] values = ArrayPool<float>.Shared.Rent(length);
                    try
                    {
                        Fill(key, first + i, values.AsSpan(0, length), scale, shift);
                        BFloat16.FromSingle(values.AsSpan(0, length), MemoryMarshal.Cast<byte, ushort>(buffer.AsSpan(2 * offset, 2 * length)));
                    }
                    finally
                    {
                        ArrayPool<float>.Shared.Return(values);
                    }
                }
                else Fill(key, first + i, MemoryMarshal.Cast<byte, float>(buffer.AsSpan(4 * offset, 4 * length)), scale, shift);
            });
            stream.Write(buffer, 0, batchValues * elementBytes);
        }
    }

    static void Fill(ulong key, long block, Span<float> values, float scale, float shift)
    {
        SeededNormal.FillBlock(key, block, values);
        TensorPrimitives.Multiply(values, scale, values);
        if (shift != 0f) TensorPrimitives.Add(values, shift, values);
    }
}
