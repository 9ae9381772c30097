using System.Text.Json;

namespace E3.Model.Tokenization;

/// <summary>The BOS/EOS token texts named by a model folder's optional tokenizer_config.json.</summary>
internal sealed record TokenizerConfigFile(string? BosToken, string? EosToken)
{
    public const string FileName = "tokenizer_config.json";

    public static readonly TokenizerConfigFile None = new(null, null);

    /// <summary>Reads <paramref name="path"/>, or returns <see cref="None"/> when the file does not exist.</summary>
    public static TokenizerConfigFile ReadIfPresent(string path)
    {
        if (!File.Exists(path)) return None;
        try
        {
            using var stream = File.OpenRead(path);
            using var doc = JsonDocument.Parse(stream);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "json", "top level is not an object");
            return new(TokenText(path, doc.RootElement, "bos_token"), TokenText(path, doc.RootElement, "eos_token"));
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "json", $"malformed JSON: {e.Message}");
        }
    }

    // transformers writes a token either as its text or as an AddedToken object {"content": text, ...}.
    static string? TokenText(string path, JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind == JsonValueKind.String) return value.GetString();
        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
            return content.GetString();
        throw new ModelFormatException(path, key, $"'{value.GetRawText()}' is neither a string nor an object with a string \"content\"");
    }
}
