using System.Text.Json;
using System.Text.Json.Nodes;

namespace E3.Tests.Reference;

/// <summary>Typed access to the fields of one JSON object, failing with the file, field and value on a wrong type.</summary>
internal sealed class JsonFields(string file, JsonObject json, string prefix = "")
{
    public string RequiredString(string name) => OptionalString(name) ?? throw Missing(name);

    public int RequiredInt(string name) => OptionalInt(name) ?? throw Missing(name);

    public string? OptionalString(string name) => Typed(name, JsonValueKind.String, "a string")?.GetValue<string>();

    public bool? OptionalBool(string name)
    {
        var node = Present(name);
        if (node is null)
        {
            return null;
        }

        var kind = node.GetValueKind();
        if (kind is not (JsonValueKind.True or JsonValueKind.False))
        {
            throw WrongType(name, node, "a boolean");
        }

        return kind == JsonValueKind.True;
    }

    public int? OptionalInt(string name)
    {
        var node = Typed(name, JsonValueKind.Number, "an integer");
        if (node is null)
        {
            return null;
        }

        // Some exporters write integral sizes as 64.0; accept those, reject 64.5.
        double value = node.GetValue<double>();
        if (value != Math.Floor(value) || value is < int.MinValue or > int.MaxValue)
        {
            throw WrongType(name, node, "an integer");
        }

        return (int)value;
    }

    public double? OptionalDouble(string name) => Typed(name, JsonValueKind.Number, "a number")?.GetValue<double>();

    /// <summary>The nested object <paramref name="name"/>, or null when absent or JSON null.</summary>
    public JsonFields? Nested(string name)
    {
        var node = Present(name);
        return node switch
        {
            null => null,
            JsonObject obj => new JsonFields(file, obj, $"{prefix}{name}."),
            _ => throw WrongType(name, node, "an object"),
        };
    }

    public void Fail(string name, string problem) => throw new ReferenceCheckpointException(file, prefix + name, problem);

    private JsonNode? Typed(string name, JsonValueKind kind, string expected)
    {
        var node = Present(name);
        if (node is not null && node.GetValueKind() != kind)
        {
            throw WrongType(name, node, expected);
        }

        return node;
    }

    // JSON null counts as absent, as transformers treats None like a missing key for these fields.
    private JsonNode? Present(string name) => json.TryGetPropertyValue(name, out var node) ? node : null;

    private ReferenceCheckpointException Missing(string name) => new(file, prefix + name, "is missing");

    private ReferenceCheckpointException WrongType(string name, JsonNode node, string expected) =>
        new(file, prefix + name, $"has value {node.ToJsonString()}; expected {expected}");
}
