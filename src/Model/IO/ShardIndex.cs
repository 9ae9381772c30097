using System.Text.Json;

namespace E3.Model.IO;

/// <summary>The weight_map of a model.safetensors.index.json: which shard file holds each tensor.</summary>
internal sealed class ShardIndex
{
    public const string FileName = "model.safetensors.index.json";

    ShardIndex(string path, IReadOnlyList<KeyValuePair<string, string>> weightMap)
    {
        Path = path;
        WeightMap = weightMap;
    }

    public string Path { get; }

    /// <summary>Tensor name to shard file name (relative to the index's folder), in index order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> WeightMap { get; }

    public static ShardIndex Load(string path)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new SafeTensorsFormatException(path, null, $"not well-formed JSON: {e.Message}");
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new SafeTensorsFormatException(path, null, $"top level is a JSON {root.ValueKind}, not an object");
            if (!root.TryGetProperty("weight_map", out JsonElement map) || map.ValueKind != JsonValueKind.Object)
                throw new SafeTensorsFormatException(path, null, "weight_map is missing or not an object");
            var weightMap = new List<KeyValuePair<string, string>>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty entry in map.EnumerateObject())
            {
                if (!seen.Add(entry.Name))
                    throw new SafeTensorsFormatException(path, entry.Name, "appears twice in weight_map");
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw new SafeTensorsFormatException(path, entry.Name, $"weight_map value {entry.Value.GetRawText()} is not a file name");
                string shard = entry.Value.GetString()!;
                // A shard must sit next to the index: no folders, no way out of the checkpoint.
                if (shard.Length == 0 || shard == "." || shard == ".." || System.IO.Path.GetFileName(shard) != shard)
                    throw new SafeTensorsFormatException(path, entry.Name, $"weight_map value '{shard}' is not a plain file name in the index's folder");
                weightMap.Add(new(entry.Name, shard));
            }
            return new ShardIndex(path, weightMap);
        }
    }
}
