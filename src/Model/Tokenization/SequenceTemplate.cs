using System.Text.Json;

namespace E3.Model.Tokenization;

/// <summary>
/// The special tokens a tokenizer.json post-processor puts before and after a single sequence, e.g. Llama-3's
/// &lt;|begin_of_text|&gt; prefix. Empty for Qwen, whose post-processor adds nothing.
/// </summary>
internal sealed record SequenceTemplate(int[] Prefix, int[] Suffix)
{
    public static readonly SequenceTemplate Empty = new([], []);

    /// <summary>Reads the "single" template of <paramref name="postProcessor"/> (undefined or null means none).</summary>
    public static SequenceTemplate FromPostProcessor(string path, JsonElement postProcessor)
        => postProcessor.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null
            ? Empty
            : Read(path, "post_processor", postProcessor);

    static SequenceTemplate Read(string path, string field, JsonElement processor)
    {
        string type = processor.ValueKind == JsonValueKind.Object && processor.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
            ? t.GetString()!
            : throw new ModelFormatException(path, $"{field}.type", "required string missing");
        return type switch
        {
            "ByteLevel" => Empty,
            "TemplateProcessing" => FromTemplate(path, field, processor),
            "RobertaProcessing" or "BertProcessing" => new([PairId(path, $"{field}.cls", processor, "cls")], [PairId(path, $"{field}.sep", processor, "sep")]),
            "Sequence" => FromSequence(path, field, processor),
            _ => throw new ModelFormatException(path, $"{field}.type", $"'{type}' is not supported (ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence)"),
        };
    }

    static SequenceTemplate FromSequence(string path, string field, JsonElement processor)
    {
        if (!processor.TryGetProperty("processors", out var list) || list.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"{field}.processors", "required array missing");
        var prefix = new List<int>();
        var suffix = new List<int>();
        int index = 0;
        foreach (var inner in list.EnumerateArray())
        {
            // Each processor wraps the output of the previous one: its prefix goes outside earlier prefixes.
            var part = Read(path, $"{field}.processors[{index++}]", inner);
            prefix.InsertRange(0, part.Prefix);
            suffix.AddRange(part.Suffix);
        }
        return new(prefix.ToArray(), suffix.ToArray());
    }

    static SequenceTemplate FromTemplate(string path, string field, JsonElement processor)
    {
        if (!processor.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"{field}.single", "required array missing");
        processor.TryGetProperty("special_tokens", out var specials);
        var prefix = new List<int>();
        var suffix = new List<int>();
        bool seenSequence = false;
        int index = 0;
        foreach (var piece in single.EnumerateArray())
        {
            string pieceField = $"{field}.single[{index++}]";
            if (piece.ValueKind == JsonValueKind.Object && piece.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
            if (!(piece.ValueKind == JsonValueKind.Object && piece.TryGetProperty("SpecialToken", out var special)
                  && special.TryGetProperty("id", out var name) && name.ValueKind == JsonValueKind.String))
                throw new ModelFormatException(path, pieceField, $"'{piece.GetRawText()}' is neither a Sequence nor a SpecialToken");
            (seenSequence ? suffix : prefix).AddRange(SpecialIds(path, $"{field}.special_tokens", specials, name.GetString()!));
        }
        if (!seenSequence) throw new ModelFormatException(path, $"{field}.single", "has no Sequence piece");
        return new(prefix.ToArray(), suffix.ToArray());
    }

    static IEnumerable<int> SpecialIds(string path, string field, JsonElement specials, string name)
    {
        if (specials.ValueKind != JsonValueKind.Object || !specials.TryGetProperty(name, out var entry)
            || !entry.TryGetProperty("ids", out var ids) || ids.ValueKind != JsonValueKind.Array)
            throw new ModelFormatException(path, $"{field}[\"{name}\"].ids", "required array missing");
        foreach (var id in ids.EnumerateArray())
            yield return id.TryGetInt32(out int value) && value >= 0
                ? value
                : throw new ModelFormatException(path, $"{field}[\"{name}\"].ids", $"'{id.GetRawText()}' is not a non-negative integer");
    }

    // Roberta/Bert processors store ["<s>", 0]: the token's text, then its id.
    static int PairId(string path, string field, JsonElement processor, string key)
        => processor.TryGetProperty(key, out var pair) && pair.ValueKind == JsonValueKind.Array && pair.GetArrayLength() == 2
           && pair[1].TryGetInt32(out int id) && id >= 0
            ? id
            : throw new ModelFormatException(path, field, "required [text, id] pair missing");
}
