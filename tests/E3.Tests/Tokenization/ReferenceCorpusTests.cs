using Xunit;

namespace E3.Tests.Tokenization;

/// <summary>
/// A model's real tokenizer.json through <see cref="E3.Model.Tokenization.HuggingFaceTokenizer"/> (Rust tokenizers)
/// against @lenml/tokenizers (JavaScript) over <see cref="TokenizerCorpus"/>. Token ids are integers, so every
/// comparison is exact.
/// </summary>
public abstract class ReferenceCorpusTests<TFixture>(TFixture fixture) where TFixture : ReferenceTokenizerFixture
{
    protected TFixture Fixture { get; } = fixture;

    [Theory]
    [MemberData(nameof(TokenizerCorpus.Names), MemberType = typeof(TokenizerCorpus))]
    public void Encode_matches_the_javascript_reference(string caseName)
    {
        var text = TokenizerCorpus.Cases.Single(c => c.Name == caseName).Text;
        Assert.Equal(Fixture.ReferenceFor(caseName).Ids, Fixture.Tokenizer.Encode(text));
    }

    [Theory]
    [MemberData(nameof(TokenizerCorpus.Names), MemberType = typeof(TokenizerCorpus))]
    public void Decode_matches_the_reference_and_round_trips(string caseName)
    {
        var c = TokenizerCorpus.Cases.Single(c => c.Name == caseName);
        string decoded = Fixture.Tokenizer.Decode(Fixture.Tokenizer.Encode(c.Text));
        Assert.Equal(Fixture.ReferenceFor(caseName).Decoded, decoded);
        // An NFC normaliser legitimately rewrites decomposed text; every other text must come back unchanged.
        if (c.ChangedByNfc && Fixture.NormalizesToNfc) Assert.NotEqual(c.Text, decoded);
        else Assert.Equal(c.Text, decoded);
    }
}

public sealed class Qwen3CorpusTests(Qwen3Fixture fixture)
    : ReferenceCorpusTests<Qwen3Fixture>(fixture), IClassFixture<Qwen3Fixture>;

public sealed class Llama3CorpusTests(Llama3Fixture fixture)
    : ReferenceCorpusTests<Llama3Fixture>(fixture), IClassFixture<Llama3Fixture>
{
    [Fact]
    public void Bos_and_eos_come_from_tokenizer_config_and_match_the_reference()
    {
        var reference = NpmFixtures.EncodeWithReference(NpmFixtures.Llama3, ["<|begin_of_text|>", "<|end_of_text|>"]);
        Assert.Equal(Assert.Single(reference[0].Ids), Fixture.Tokenizer.BosTokenId);
        Assert.Equal(Assert.Single(reference[1].Ids), Fixture.Tokenizer.EosTokenId);
    }
}
