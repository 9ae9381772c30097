using System.Text.Encodings.Web;
using System.Text.Json;

namespace E3.Model.Tokenization;

/// <summary>
/// What E3 needs to know from a Hugging Face tokenizer.json beyond what the native tokenizer exposes: the id range,
/// the added tokens, and the tokens the post-processor wraps a sequence in.
/// </summary>
internal sealed class TokenizerJsonFile
{
    // The top-level fields that make the native encoder change its output behind our back: the post-processor adds
    // BOS/EOS unconditionally, truncation cuts long texts, padding appends pad ids. E3 applies the post-processor
    // template itself (only when asked) and never truncates or pads.
    static readonly string[] NeutralisedFields = ["post_processor", "truncation", "padding"];

    public required string Path { get; init; }
    public required int VocabSize { get; init; }
    /// <summary>Added tokens marked special: the native decoder drops these, so E3 writes their text itself.</summary>
    public required IReadOnlyDictionary<int, string> SpecialTextById { get; init; }
    public required SequenceTemplate Template { get; init; }
    /// <summary>Whether the file must be rewritten (see <see cref="NeutralisedFields"/>) before the native load.</summary>
    public required bool NeedsNeutralisedCopy { get; init; }

    /// <summary>Ids of the tokens named in <c>Read</c>'s lookups that exist, found among the added tokens or in the model vocabulary.</summary>
    public required IReadOnlyDictionary<string, int> ResolvedIds { get; init; }

    /// <summary>Reads <paramref name="path"/> and resolves the ids of <paramref name="lookups"/> (e.g. the BOS/EOS texts).</summary>
    public static TokenizerJsonFile Read(string path, IEnumerable<string> lookups)
    {
        using var doc = Parse(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException(path, "json", "top level is not an object");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException(path, "model", "required object missing");

        int maxId = MaxVocabId(path, model);
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var specialText = new Dictionary<int, string>();
        if (root.TryGetProperty("added_tokens", out var addedTokens) && addedTokens.ValueKind != JsonValueKind.Null)
        {
            if (addedTokens.ValueKind != JsonValueKind.Array) throw new ModelFormatException(path, "added_tokens", "is not an array");
            int index = 0;
            foreach (var token in addedTokens.EnumerateArray())
            {
                string field = $"added_tokens[{index++}]";
                int id = RequireId(path, $"{field}.id", token);
                string content = token.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String
                    ? c.GetString()!
                    : throw new ModelFormatException(path, $"{field}.content", "required string missing");
                added[content] = id;
                if (token.TryGetProperty("special", out var special) && special.ValueKind == JsonValueKind.True) specialText[id] = content;
                maxId = Math.Max(maxId, id);
            }
        }

        var postProcessor = root.TryGetProperty("post_processor", out var pp) ? pp : default;
        bool needsCopy = NeutralisedFields.Any(f => root.TryGetProperty(f, out var v) && v.ValueKind != JsonValueKind.Null
                                                    && !(f == "post_processor" && IsTokenFree(v)));
        var resolved = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in lookups)
        {
            if (added.TryGetValue(token, out int id)
                || (model.TryGetProperty("vocab", out var vocab) && vocab.ValueKind == JsonValueKind.Object
                    && vocab.TryGetProperty(token, out var v) && v.TryGetInt32(out id)))
                resolved[token] = id;
        }
        return new TokenizerJsonFile
        {
            ResolvedIds = resolved,
            Path = path,
            VocabSize = maxId + 1,
            SpecialTextById = specialText,
            Template = SequenceTemplate.FromPostProcessor(path, postProcessor),
            NeedsNeutralisedCopy = needsCopy,
        };
    }

    /// <summary>
    /// Writes a copy of the file with the post-processor, truncation and padding set to null, so that the native
    /// encoder returns exactly the tokens of the text.
    /// </summary>
    public void WriteNeutralisedCopy(string destination)
    {
        using var doc = Parse(Path);
        using var stream = File.Create(destination);
        // Vocabulary entries are arbitrary Unicode; relaxed escaping keeps them readable and is still valid JSON.
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        writer.WriteStartObject();
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            if (NeutralisedFields.Contains(property.Name)) writer.WriteNull(property.Name);
            else property.WriteTo(writer);
        }
        writer.WriteEndObject();
    }

    static JsonDocument Parse(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "json", $"malformed JSON: {e.Message}");
        }
    }

    // A ByteLevel post-processor only adjusts offsets, which E3 does not use; leaving it in place avoids a copy.
    static bool IsTokenFree(JsonElement postProcessor)
        => postProcessor.ValueKind == JsonValueKind.Object
           && postProcessor.TryGetProperty("type", out var type) && type.ValueEquals("ByteLevel");

    static int MaxVocabId(string path, JsonElement model)
    {
        if (!model.TryGetProperty("vocab", out var vocab)) throw new ModelFormatException(path, "model.vocab", "required field missing");
        switch (vocab.ValueKind)
        {
            case JsonValueKind.Object: // BPE and WordPiece: token → id
                int max = -1;
                foreach (var entry in vocab.EnumerateObject())
                {
                    if (!entry.Value.TryGetInt32(out int id) || id < 0)
                        throw new ModelFormatException(path, $"model.vocab[\"{entry.Name}\"]", $"'{entry.Value.GetRawText()}' is not a non-negative integer id");
                    max = Math.Max(max, id);
                }
                return max;
            case JsonValueKind.Array: // Unigram: [piece, score] pairs, the id is the position
                return vocab.GetArrayLength() - 1;
            default:
                throw new ModelFormatException(path, "model.vocab", $"is a {vocab.ValueKind}, expected an object or an array");
        }
    }

    static int RequireId(string path, string field, JsonElement owner)
        => owner.ValueKind == JsonValueKind.Object && owner.TryGetProperty("id", out var v) && v.TryGetInt32(out int id) && id >= 0
            ? id
            : throw new ModelFormatException(path, field, "required non-negative integer missing");
}
