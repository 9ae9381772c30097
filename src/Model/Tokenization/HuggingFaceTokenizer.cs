using System.Collections.Frozen;
using System.Runtime.InteropServices;
using System.Text;
using NativeTokenizer = Tokenizers.DotNet.Tokenizer;
using NativeTokenizerException = Tokenizers.DotNet.TokenizerException;

namespace E3.Model.Tokenization;

/// <summary>
/// A model folder's Hugging Face tokenizer.json (Qwen3/Qwen2 and Llama-3 byte-level BPE, added and special tokens),
/// run by the Rust <c>tokenizers</c> library through Tokenizers.DotNet, so normalisation, pre-tokenisation and merges
/// are exactly those of the reference implementation.
/// </summary>
internal sealed class HuggingFaceTokenizer : ITokenizer
{
    /// <summary>The file this tokenizer reads inside a model folder.</summary>
    public const string FileName = "tokenizer.json";

    readonly NativeTokenizer native;
    readonly FrozenDictionary<int, string> specialTextById;
    readonly SequenceTemplate template;
    bool disposed;

    HuggingFaceTokenizer(NativeTokenizer native, TokenizerJsonFile file, int? bos, int? eos)
    {
        this.native = native;
        specialTextById = file.SpecialTextById.ToFrozenDictionary();
        template = file.Template;
        VocabSize = file.VocabSize;
        SpecialTokens = file.SpecialTextById.ToFrozenDictionary(kv => kv.Value, kv => kv.Key, StringComparer.Ordinal);
        BosTokenId = bos;
        EosTokenId = eos;
        SourcePath = file.Path;
    }

    /// <inheritdoc/>
    public int VocabSize { get; }
    /// <inheritdoc/>
    public int? BosTokenId { get; }
    /// <inheritdoc/>
    public int? EosTokenId { get; }
    /// <inheritdoc/>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }
    /// <summary>The tokenizer.json this tokenizer was loaded from.</summary>
    public string SourcePath { get; }

    /// <summary>
    /// Loads <paramref name="path"/>: a model folder (its tokenizer.json, plus tokenizer_config.json for the BOS/EOS
    /// names when present) or a tokenizer.json file. Throws <see cref="ModelFormatException"/> naming the file and
    /// field when either file is missing or malformed.
    /// </summary>
    public static HuggingFaceTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string jsonPath = Directory.Exists(path) ? Path.Combine(path, FileName) : path;
        if (!File.Exists(jsonPath)) throw new ModelFormatException(jsonPath, FileName, "file not found");
        string folder = Path.GetDirectoryName(Path.GetFullPath(jsonPath))!;
        string configPath = Path.Combine(folder, TokenizerConfigFile.FileName);
        var config = TokenizerConfigFile.ReadIfPresent(configPath);

        var file = TokenizerJsonFile.Read(jsonPath, new[] { config.BosToken, config.EosToken }.OfType<string>());
        // Without a bos_token in tokenizer_config.json, a template that prepends exactly one token names the BOS
        // (Llama-3's <|begin_of_text|>); Qwen's templates prepend nothing, so it has none.
        int? bos = ResolveNamed(configPath, "bos_token", config.BosToken, file)
                   ?? (file.Template.Prefix.Length == 1 ? file.Template.Prefix[0] : null);
        int? eos = ResolveNamed(configPath, "eos_token", config.EosToken, file);
        return new HuggingFaceTokenizer(LoadNative(file), file, bos, eos);
    }

    static int? ResolveNamed(string configPath, string field, string? token, TokenizerJsonFile file)
    {
        if (token is null) return null;
        return file.ResolvedIds.TryGetValue(token, out int id)
            ? id
            : throw new ModelFormatException(configPath, field, $"'{token}' is not a token of {file.Path}");
    }

    static NativeTokenizer LoadNative(TokenizerJsonFile file)
    {
        string nativePath = file.Path;
        string? copy = null;
        try
        {
            if (file.NeedsNeutralisedCopy)
            {
                copy = Path.Combine(Path.GetTempPath(), $"e3-tokenizer-{Guid.NewGuid():N}.json");
                file.WriteNeutralisedCopy(copy);
                nativePath = copy;
            }
            return new NativeTokenizer(nativePath);
        }
        catch (NativeTokenizerException e)
        {
            throw new ModelFormatException(file.Path, "json", $"rejected by the tokenizers library: {e.Message}");
        }
        finally
        {
            if (copy is not null) File.Delete(copy);
        }
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        ObjectDisposedException.ThrowIf(disposed, this);
        uint[] body = text.Length == 0 ? [] : native.Encode(ReplaceLoneSurrogates(text));
        var (prefix, suffix) = addSpecialTokens ? (template.Prefix, template.Suffix) : ([], []);
        var ids = new int[prefix.Length + body.Length + suffix.Length];
        prefix.CopyTo(ids, 0);
        MemoryMarshal.Cast<uint, int>(body).CopyTo(ids.AsSpan(prefix.Length));
        suffix.CopyTo(ids, prefix.Length + body.Length);
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var text = new StringBuilder();
        int runStart = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"id at position {i} is outside the vocabulary [0, {VocabSize}) of {SourcePath}");
            // The native decoder drops special tokens; splitting there is exact because a special token is a
            // whole string that no byte sequence continues across.
            if (!specialTextById.TryGetValue(id, out var special)) continue;
            DecodeRun(text, ids[runStart..i]);
            text.Append(special);
            runStart = i + 1;
        }
        DecodeRun(text, ids[runStart..]);
        return text.ToString();
    }

    void DecodeRun(StringBuilder text, ReadOnlySpan<int> run)
    {
        if (run.IsEmpty) return;
        text.Append(native.Decode(MemoryMarshal.Cast<int, uint>(run).ToArray()));
    }

    // The native side rejects text that is not valid UTF-16; a lone surrogate becomes U+FFFD, which is also what
    // any UTF-8 encoder of the text would have produced.
    static string ReplaceLoneSurrogates(string text)
    {
        int firstBad = FirstLoneSurrogate(text, 0);
        if (firstBad < 0) return text;
        var chars = text.ToCharArray();
        for (int i = firstBad; i >= 0; i = FirstLoneSurrogate(text, i + 1)) chars[i] = '\uFFFD';
        return new string(chars);
    }

    static int FirstLoneSurrogate(string text, int start)
    {
        for (int i = start; i < text.Length; i++)
        {
            char c = text[i];
            if (!char.IsSurrogate(c)) continue;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            return i;
        }
        return -1;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        native.Dispose();
    }
}
