using Xunit;
using CsCheck;
using E3.Model.Tokenization;

namespace E3.Tests.Tokenization;

/// <summary><see cref="ByteTokenizer"/> against a scalar UTF-8 encoder written from RFC 3629's bit layout.</summary>
public sealed class ByteTokenizerTests
{
    // Code points from each UTF-8 length class (1 to 4 bytes), surrogates excluded: they are not Unicode scalars.
    static readonly Gen<int> Scalar = Gen.OneOf(
        Gen.Int[0, 0x7F],
        Gen.Int[0x80, 0x7FF],
        Gen.Int[0x800, 0xFFFF].Where(cp => cp is < 0xD800 or > 0xDFFF),
        Gen.Int[0x10000, 0x10FFFF]);

    static readonly Gen<string> Text = Scalar.Array[0, 40].Select(cps => string.Concat(cps.Select(char.ConvertFromUtf32)));

    [Fact]
    public void Encode_is_the_utf8_bytes_and_decode_inverts_it()
    {
        using var tokenizer = new ByteTokenizer();
        Text.Sample(text =>
        {
            var ids = tokenizer.Encode(text);
            Assert.Equal(ReferenceUtf8(text), ids);
            Assert.Equal(text, tokenizer.Decode(ids));
        }, iter: 2000);
    }

    [Fact]
    public void AddSpecialTokens_prepends_bos_only()
    {
        using var tokenizer = new ByteTokenizer();
        Text.Sample(text =>
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: true);
            Assert.Equal([ByteTokenizer.BosId, .. ReferenceUtf8(text)], ids);
            Assert.Equal(ByteTokenizer.BosText + text, tokenizer.Decode(ids));
        }, iter: 200);
    }

    [Fact]
    public void Special_ids_follow_the_bytes()
    {
        using var tokenizer = new ByteTokenizer();
        Assert.Equal(258, tokenizer.VocabSize);
        Assert.Equal(256, tokenizer.BosTokenId);
        Assert.Equal(257, tokenizer.EosTokenId);
        Assert.Equal(256, tokenizer.SpecialTokens["<|bos|>"]);
        Assert.Equal(257, tokenizer.SpecialTokens["<|eos|>"]);
        // Special ids split byte runs: é (C3 A9) either side of EOS decodes as two whole characters.
        Assert.Equal("é<|eos|>é", tokenizer.Decode([0xC3, 0xA9, ByteTokenizer.EosId, 0xC3, 0xA9]));
        // Special-token spellings in text are just bytes, so any text round-trips.
        Assert.Equal(ReferenceUtf8("<|eos|>"), tokenizer.Encode("<|eos|>"));
    }

    [Fact]
    public void Invalid_utf8_and_bad_ids()
    {
        using var tokenizer = new ByteTokenizer();
        // A character cut in half (as sampling can produce) decodes to U+FFFD instead of throwing.
        Assert.Equal("a\uFFFD", tokenizer.Decode([0x61, 0xC3]));
        Assert.Equal("\uFFFD", tokenizer.Encode("\uD800") is var ids ? tokenizer.Decode(ids) : null);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([65, 258]));
        Assert.Contains("position 1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([-1]));
    }

    [Fact]
    public void Long_input_decodes_through_the_heap_buffer()
    {
        // More than the 4096 bytes decoded on the stack.
        using var tokenizer = new ByteTokenizer();
        string text = string.Concat(Enumerable.Repeat("ü€𝄞 ", 2000));
        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    static int[] ReferenceUtf8(string text)
    {
        var bytes = new List<int>();
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (cp is >= 0xD800 and <= 0xDBFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (text[++i] - 0xDC00);
            if (cp < 0x80) bytes.Add(cp);
            else if (cp < 0x800) bytes.AddRange([0xC0 | (cp >> 6), 0x80 | (cp & 0x3F)]);
            else if (cp < 0x10000) bytes.AddRange([0xE0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F)]);
            else bytes.AddRange([0xF0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3F), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F)]);
        }
        return bytes.ToArray();
    }
}
