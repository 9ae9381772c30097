namespace E3.Model.Tokenization;

/// <summary>
/// Text to token ids and back, for one model's vocabulary. Implementations may hold native resources, so callers
/// dispose the tokenizer when done with it.
/// </summary>
public interface ITokenizer : IDisposable
{
    /// <summary>Number of ids this tokenizer can produce: every id it returns lies in [0, VocabSize).</summary>
    int VocabSize { get; }

    /// <summary>Id of the beginning-of-sequence token, or null when the model has none (Qwen).</summary>
    int? BosTokenId { get; }

    /// <summary>Id of the token that ends generation, or null when the tokenizer files do not name one.</summary>
    int? EosTokenId { get; }

    /// <summary>Special tokens by their text, e.g. "&lt;|im_start|&gt;" → 151644.</summary>
    IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>
    /// Splits <paramref name="text"/> into token ids. Special tokens written literally in the text are recognised.
    /// With <paramref name="addSpecialTokens"/> the tokens the model expects around a sequence (e.g. Llama-3's
    /// &lt;|begin_of_text|&gt;) are added as well.
    /// </summary>
    int[] Encode(string text, bool addSpecialTokens = false);

    /// <summary>
    /// Turns ids back into text, special tokens included as their text. Byte sequences that are not valid UTF-8
    /// (e.g. a character cut in half) decode to U+FFFD. Throws <see cref="ArgumentOutOfRangeException"/> for an
    /// id outside [0, VocabSize).
    /// </summary>
    string Decode(ReadOnlySpan<int> ids);
}
