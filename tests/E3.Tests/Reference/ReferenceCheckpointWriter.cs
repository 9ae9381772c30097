using System.Text.Json;
using System.Text.Json.Nodes;

namespace E3.Tests.Reference;

/// <summary>
/// Writes seeded random test models in the exact Hugging Face layout (config.json plus model.safetensors, or shards
/// with model.safetensors.index.json), so engine and reference read the same folder a real download would give.
/// </summary>
public static class ReferenceCheckpointWriter
{
    /// <summary>Standard deviation transformers-style initialisers use for projections (initializer_range).</summary>
    public const double DefaultProjectionStd = 0.02;

    /// <summary>Spread of norm scales around one, so norms are not the identity and a missed norm shows.</summary>
    public const double NormScaleStd = 0.1;

    /// <summary>
    /// Writes <paramref name="config"/> and random weights (normal with <paramref name="projectionStd"/> for embeddings,
    /// projections and biases; 1 + N(0, 0.1) for norm scales) drawn from <paramref name="seed"/>, stored as
    /// <paramref name="storage"/> in <paramref name="shards"/> files. Returns the float32 values drawn, before storage rounding.
    /// </summary>
    public static IReadOnlyList<StoredTensor> WriteRandom(
        string folder,
        ReferenceConfig config,
        int seed,
        ReferenceStorage storage = ReferenceStorage.F32,
        int shards = 1,
        double projectionStd = DefaultProjectionStd)
    {
        var random = new Random(seed);
        var tensors = ReferenceLayout.Expected(config)
            .Select(spec => new StoredTensor(spec.Name, spec.Shape, Draw(random, spec, projectionStd)))
            .ToList();
        Write(folder, config, tensors, storage, shards);
        return tensors;
    }

    /// <summary>Writes given tensors and config in HF layout; with more than one shard, adds the index file.</summary>
    public static void Write(string folder, ReferenceConfig config, IReadOnlyList<StoredTensor> tensors, ReferenceStorage storage, int shards = 1)
    {
        if (shards < 1 || shards > tensors.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(shards), shards, $"Between 1 and the tensor count ({tensors.Count}).");
        }

        Directory.CreateDirectory(folder);
        config.Save(Path.Combine(folder, ReferenceCheckpoint.ConfigFileName));
        string single = Path.Combine(folder, ReferenceCheckpoint.WeightsFileName);
        string index = Path.Combine(folder, ReferenceCheckpoint.IndexFileName);
        if (shards == 1)
        {
            SafeTensorsWriter.Write(single, tensors, storage);
            // A stale index next to a fresh single file would describe weights that are no longer there.
            File.Delete(index);
            return;
        }

        var weightMap = new JsonObject();
        int perShard = (tensors.Count + shards - 1) / shards;
        for (int shard = 0; shard < shards; shard++)
        {
            var part = tensors.Skip(shard * perShard).Take(perShard).ToList();
            string name = $"model-{shard + 1:D5}-of-{shards:D5}.safetensors";
            SafeTensorsWriter.Write(Path.Combine(folder, name), part, storage);
            foreach (var tensor in part)
            {
                weightMap[tensor.Name] = name;
            }
        }

        long totalBytes = tensors.Sum(t => (long)t.Values.Length) * (storage == ReferenceStorage.F32 ? 4 : 2);
        var indexJson = new JsonObject
        {
            ["metadata"] = new JsonObject { ["total_size"] = totalBytes },
            ["weight_map"] = weightMap,
        };
        AtomicFile.WriteAllBytes(index, JsonSerializer.SerializeToUtf8Bytes(indexJson, new JsonSerializerOptions { WriteIndented = true }));
        // The loader prefers model.safetensors, so an old single file would shadow the new shards.
        File.Delete(single);
    }

    private static float[] Draw(Random random, ReferenceTensorSpec spec, double projectionStd)
    {
        long count = spec.Shape.Aggregate(1L, (n, d) => n * d);
        var values = new float[count];
        bool norm = spec.Kind == ReferenceTensorKind.NormScale;
        for (long i = 0; i < count; i++)
        {
            double z = StandardNormal(random);
            values[i] = (float)(norm ? 1.0 + NormScaleStd * z : projectionStd * z);
        }

        return values;
    }

    // Box-Muller on System.Random(seed), whose seeded sequence .NET keeps stable, so a seed names the same model everywhere.
    private static double StandardNormal(Random random)
    {
        double u1 = 1.0 - random.NextDouble();
        double u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
