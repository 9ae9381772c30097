using System.Buffers;
using System.Collections.Frozen;
using System.Text;

namespace E3.Model.Tokenization;

/// <summary>
/// The tokenizer of small test models: ids 0..255 are the bytes of the UTF-8 text, followed by
/// <see cref="BosId"/> and <see cref="EosId"/>. Text is never searched for special-token spellings, so any string
/// round-trips exactly.
/// </summary>
internal sealed class ByteTokenizer : ITokenizer
{
    /// <summary>Beginning-of-sequence id, the first id after the 256 byte values.</summary>
    public const int BosId = 256;
    /// <summary>End-of-sequence id.</summary>
    public const int EosId = 257;
    /// <summary>Total number of ids: 256 bytes and the two special ids.</summary>
    public const int Size = 258;

    /// <summary>How <see cref="Decode"/> spells <see cref="BosId"/>.</summary>
    public const string BosText = "<|bos|>";
    /// <summary>How <see cref="Decode"/> spells <see cref="EosId"/>.</summary>
    public const string EosText = "<|eos|>";

    static readonly FrozenDictionary<string, int> Specials =
        new Dictionary<string, int> { [BosText] = BosId, [EosText] = EosId }.ToFrozenDictionary();

    // Invalid UTF-8 (a sequence cut by sampling) becomes U+FFFD rather than an exception mid-generation.
    static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    /// <inheritdoc/>
    public int VocabSize => Size;
    /// <inheritdoc/>
    public int? BosTokenId => BosId;
    /// <inheritdoc/>
    public int? EosTokenId => EosId;
    /// <inheritdoc/>
    public IReadOnlyDictionary<string, int> SpecialTokens => Specials;

    /// <inheritdoc/>
    public int[] Encode(string text, bool addSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        int prefix = addSpecialTokens ? 1 : 0;
        int byteCount = Utf8.GetByteCount(text);
        var ids = new int[prefix + byteCount];
        if (addSpecialTokens) ids[0] = BosId;

        byte[] bytes = ArrayPool<byte>.Shared.Rent(byteCount);
        try
        {
            int written = Utf8.GetBytes(text, bytes);
            var target = ids.AsSpan(prefix);
            for (int i = 0; i < written; i++) target[i] = bytes[i];
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
        return ids;
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var text = new StringBuilder(ids.Length);
        Span<byte> run = ids.Length <= 4096 ? stackalloc byte[ids.Length] : new byte[ids.Length];
        int runLength = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id < 256) { run[runLength++] = (byte)id; continue; }
            // A special id ends the current byte run: UTF-8 never continues across it.
            FlushRun(text, run, ref runLength);
            text.Append(id switch
            {
                BosId => BosText,
                EosId => EosText,
                _ => throw new ArgumentOutOfRangeException(nameof(ids), id, $"id at position {i} is outside the byte tokenizer's vocabulary [0, {Size})"),
            });
        }
        FlushRun(text, run, ref runLength);
        return text.ToString();
    }

    static void FlushRun(StringBuilder text, Span<byte> run, ref int runLength)
    {
        if (runLength == 0) return;
        text.Append(Utf8.GetString(run[..runLength]));
        runLength = 0;
    }

    /// <summary>Nothing to release; present so that every <see cref="ITokenizer"/> can be disposed alike.</summary>
    public void Dispose() { }
}
