using E3.Model.Tokenization;

namespace E3.Tests.Tokenization;

/// <summary>
/// Loads one model's tokenizer once and runs the JavaScript reference once over the whole corpus: starting node and
/// parsing a 9-11 MB JSON per case would dominate the test time.
/// </summary>
public abstract class ReferenceTokenizerFixture : IDisposable
{
    readonly Lazy<HuggingFaceTokenizer> tokenizer;
    readonly Lazy<IReadOnlyDictionary<string, NpmFixtures.Reference>> references;

    protected ReferenceTokenizerFixture(string model, bool normalizesToNfc)
    {
        Model = model;
        NormalizesToNfc = normalizesToNfc;
        tokenizer = new(() => HuggingFaceTokenizer.Load(NpmFixtures.ModelDir(model)));
        references = new(() =>
        {
            var cases = TokenizerCorpus.Cases;
            var answers = NpmFixtures.EncodeWithReference(model, cases.Select(c => c.Text).ToArray());
            return cases.Zip(answers).ToDictionary(p => p.First.Name, p => p.Second);
        });
    }

    /// <summary>The model name encode.mjs takes.</summary>
    public string Model { get; }

    /// <summary>Whether the tokenizer.json normaliser is NFC (Qwen) rather than none (Llama-3).</summary>
    public bool NormalizesToNfc { get; }

    /// <summary>The tokenizer loaded from the model folder (tokenizer.json and tokenizer_config.json).</summary>
    internal HuggingFaceTokenizer Tokenizer
    {
        get
        {
            NpmFixtures.RequireTokenizerJson(Model);
            return tokenizer.Value;
        }
    }

    public NpmFixtures.Reference ReferenceFor(string caseName) => references.Value[caseName];

    public void Dispose()
    {
        if (tokenizer.IsValueCreated) tokenizer.Value.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Qwen3's tokenizer (NFC normaliser, single digits, ChatML special tokens).</summary>
public sealed class Qwen3Fixture() : ReferenceTokenizerFixture(NpmFixtures.Qwen3, normalizesToNfc: true);

/// <summary>Llama-3's tokenizer (no normaliser, digits in groups of three, old string-form merges).</summary>
public sealed class Llama3Fixture() : ReferenceTokenizerFixture(NpmFixtures.Llama3, normalizesToNfc: false);
