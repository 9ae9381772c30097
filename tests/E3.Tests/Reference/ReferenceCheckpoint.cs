using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace E3.Tests.Reference;

/// <summary>
/// A Hugging Face model folder (config.json plus model.safetensors or shards listed in model.safetensors.index.json)
/// read independently of the engine into float32 or float64 TorchSharp tensors. Owns its tensors; dispose it.
/// </summary>
public sealed class ReferenceCheckpoint : IDisposable
{
    /// <summary>Single-file weights name.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>Shard index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>Config name.</summary>
    public const string ConfigFileName = "config.json";

    private readonly Dictionary<string, Tensor> _tensors;
    private bool _disposed;

    private ReferenceCheckpoint(string folder, ReferenceConfig config, ScalarType dtype, Dictionary<string, Tensor> tensors)
    {
        Folder = folder;
        Config = config;
        DType = dtype;
        _tensors = tensors;
    }

    /// <summary>The folder the checkpoint came from.</summary>
    public string Folder { get; }

    /// <summary>The parsed config.json.</summary>
    public ReferenceConfig Config { get; }

    /// <summary>Float32 or Float64: the dtype every tensor was converted to on load.</summary>
    public ScalarType DType { get; }

    /// <summary>Names of all stored tensors, including any the decoder does not use.</summary>
    public IReadOnlyCollection<string> TensorNames => _tensors.Keys;

    /// <summary>
    /// Reads <paramref name="folder"/> into tensors of <paramref name="dtype"/> (Float32 or Float64) and checks that
    /// every tensor the config implies is present with its exact shape.
    /// </summary>
    public static ReferenceCheckpoint Load(string folder, ScalarType dtype = ScalarType.Float32)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.Float64))
        {
            throw new ArgumentException($"Checkpoint tensors load as Float32 or Float64, not {dtype}.", nameof(dtype));
        }

        string configPath = Path.Combine(folder, ConfigFileName);
        if (!File.Exists(configPath))
        {
            throw new ReferenceCheckpointException(configPath, "(file)", "does not exist");
        }

        var config = ReferenceConfig.Load(configPath);
        var tensors = LoadTensors(folder, dtype);
        try
        {
            CheckLayout(folder, config, tensors);
        }
        catch
        {
            TensorOwnership.DisposeAll(tensors.Values);

            throw;
        }

        return new ReferenceCheckpoint(folder, config, dtype, tensors);
    }

    /// <summary>The stored tensor <paramref name="name"/>; it stays owned by the checkpoint.</summary>
    public Tensor Weight(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _tensors.TryGetValue(name, out var tensor)
            ? tensor
            : throw new ReferenceCheckpointException(Folder, name, "is not in the checkpoint");
    }

    /// <summary>The stored tensor <paramref name="name"/>, or null when absent (optional biases).</summary>
    public Tensor? OptionalWeight(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _tensors.GetValueOrDefault(name);
    }

    /// <summary>Releases every tensor.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        TensorOwnership.DisposeAll(_tensors.Values);
        _tensors.Clear();
    }

    private static Dictionary<string, Tensor> LoadTensors(string folder, ScalarType dtype)
    {
        string single = Path.Combine(folder, WeightsFileName);
        string index = Path.Combine(folder, IndexFileName);
        if (File.Exists(single))
        {
            return SafeTensorsReader.Load(single, dtype);
        }

        if (!File.Exists(index))
        {
            throw new ReferenceCheckpointException(folder, WeightsFileName, $"does not exist, and neither does {IndexFileName}");
        }

        var weightMap = ReadWeightMap(index);
        var tensors = new Dictionary<string, Tensor>();
        try
        {
            foreach (string shard in weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                string shardPath = Path.Combine(folder, shard);
                if (!File.Exists(shardPath))
                {
                    throw new ReferenceCheckpointException(index, "weight_map", $"names shard \"{shard}\", which does not exist");
                }

                var shardTensors = SafeTensorsReader.Load(shardPath, dtype);
                string? repeated = shardTensors.Keys.FirstOrDefault(tensors.ContainsKey);
                if (repeated is not null)
                {
                    TensorOwnership.DisposeAll(shardTensors.Values);
                    throw new ReferenceCheckpointException(shardPath, repeated, "is stored in more than one shard");
                }

                foreach (var (name, tensor) in shardTensors)
                {
                    tensors.Add(name, tensor);
                }
            }

            foreach (var (name, shard) in weightMap)
            {
                if (!tensors.ContainsKey(name))
                {
                    throw new ReferenceCheckpointException(index, $"weight_map.{name}", $"has value \"{shard}\", but that shard does not hold the tensor");
                }
            }
        }
        catch
        {
            TensorOwnership.DisposeAll(tensors.Values);

            throw;
        }

        return tensors;
    }

    private static Dictionary<string, string> ReadWeightMap(string index)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(index));
            if (!document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new ReferenceCheckpointException(index, "weight_map", "is missing or not an object");
            }

            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                // A shard name must be a plain file in the folder; anything else could read outside it.
                if (string.IsNullOrEmpty(shard) || shard != Path.GetFileName(shard))
                {
                    throw new ReferenceCheckpointException(index, $"weight_map.{entry.Name}", $"has value {entry.Value.GetRawText()}; expected a shard file name");
                }

                result[entry.Name] = shard;
            }

            return result;
        }
        catch (JsonException e)
        {
            throw new ReferenceCheckpointException(index, "(document)", $"is not valid JSON: {e.Message}");
        }
    }

    private static void CheckLayout(string folder, ReferenceConfig config, Dictionary<string, Tensor> tensors)
    {
        foreach (var spec in ReferenceLayout.Expected(config))
        {
            if (!tensors.TryGetValue(spec.Name, out var tensor))
            {
                throw new ReferenceCheckpointException(folder, spec.Name, $"is missing; a {config.ModelType} config with these sizes needs it with shape [{string.Join(", ", spec.Shape)}]");
            }

            if (!tensor.shape.SequenceEqual(spec.Shape))
            {
                throw new ReferenceCheckpointException(folder, spec.Name, $"has shape [{string.Join(", ", tensor.shape)}]; config.json implies [{string.Join(", ", spec.Shape)}]");
            }
        }
    }
}
