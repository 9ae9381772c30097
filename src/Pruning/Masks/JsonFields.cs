using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;

namespace E3.Pruning.Masks;

/// <summary>Typed reads of JSON fields for the pruning file formats, every failure naming the file and field.</summary>
internal static class JsonFields
{
    /// <summary>
    /// The JSON object in <paramref name="path"/>: text that does not parse is a <see cref="ModelFormatException"/> for
    /// field "(json)" (its message after <paramref name="parseProblem"/>), any other root one for "(root)".
    /// </summary>
    public static JsonObject ReadObject(string path, string parseProblem = "")
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ModelFormatException(path, "(root)", "is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "(json)", parseProblem + e.Message);
        }
    }

    /// <summary>
    /// <paramref name="o"/>[<paramref name="key"/>] as <typeparamref name="T"/>; a missing or mistyped value is a
    /// <see cref="ModelFormatException"/> for <paramref name="path"/> naming <paramref name="field"/> (default: the key).
    /// </summary>
    public static T Get<T>(JsonObject o, string path, string key, string? field = null)
    {
        field ??= key;
        var node = o[key] ?? throw new ModelFormatException(path, field, "missing");
        try
        {
            return node.GetValue<T>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw new ModelFormatException(path, field, $"{node.ToJsonString()} is not a valid {typeof(T).Name}");
        }
    }
}
