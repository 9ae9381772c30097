using E3.Model.Tokenization;

namespace E3.Tests.Tokenization;

/// <summary>
/// Loads Qwen3's tokenizer once and runs the JavaScript reference once over the whole corpus: starting node and
/// parsing an 11 MB JSON per case would dominate the test time.
/// </summary>
public sealed class Qwen3ReferenceFixture : IDisposable
{
    readonly Lazy<HuggingFaceTokenizer> tokenizer = new(() => HuggingFaceTokenizer.Load(NpmFixtures.Qwen3ModelDir));
    readonly Lazy<IReadOnlyDictionary<string, NpmFixtures.Reference>> references = new(() =>
    {
        var cases = Qwen3Corpus.Cases;
        var answers = NpmFixtures.EncodeWithReference(cases.Select(c => c.Text).ToArray());
        return cases.Zip(answers).ToDictionary(p => p.First.Name, p => p.Second);
    });

    /// <summary>Qwen3's tokenizer loaded from its model folder (tokenizer.json and tokenizer_config.json).</summary>
    public HuggingFaceTokenizer Tokenizer
    {
        get
        {
            NpmFixtures.RequireQwen3TokenizerJson();
            return tokenizer.Value;
        }
    }

    public NpmFixtures.Reference ReferenceFor(string caseName) => references.Value[caseName];

    public void Dispose()
    {
        if (tokenizer.IsValueCreated) tokenizer.Value.Dispose();
    }
}
