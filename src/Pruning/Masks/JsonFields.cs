using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;

namespace E3.Pruning.Masks;

/// <summary>
/// Typed reads of JSON fields for the pruning file formats, every failure naming the file and field: a
/// <see cref="ModelFormatException"/> unless the caller's format has an exception of its own (<c>fail</c>, taking the
/// file, field and problem).
/// </summary>
internal static class JsonFields
{
    /// <summary>
    /// The JSON object in <paramref name="path"/>: text that does not parse fails for field "(json)" (its message after
    /// <paramref name="parseProblem"/>), any other root for "(root)".
    /// </summary>
    public static JsonObject ReadObject(string path, string parseProblem = "", Func<string, string, string, Exception>? fail = null)
    {
        fail ??= Default;
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw fail(path, "(root)", "is not a JSON object");
        }
        catch (JsonException e)
        {
            throw fail(path, "(json)", parseProblem + e.Message);
        }
    }

    /// <summary>
    /// <paramref name="o"/>[<paramref name="key"/>] as <typeparamref name="T"/>; a missing or mistyped value fails for
    /// <paramref name="path"/> naming <paramref name="field"/> (default: the key).
    /// </summary>
    public static T Get<T>(JsonObject o, string path, string key, string? field = null, Func<string, string, string, Exception>? fail = null)
    {
        field ??= key;
        fail ??= Default;
        var node = o[key] ?? throw fail(path, field, "missing");
        try
        {
            return node.GetValue<T>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw fail(path, field, $"{node.ToJsonString()} is not a valid {typeof(T).Name}");
        }
    }

    static Exception Default(string file, string field, string problem) => new ModelFormatException(file, field, problem);
}
