using Xunit;
using E3.Model;
using E3.Model.Tokenization;

namespace E3.Tests.Tokenization;

/// <summary>Choosing a model folder's tokenizer, and the errors for folders and files that do not say enough.</summary>
public sealed class TokenizerLoaderTests
{
    // A complete but tiny BPE tokenizer: a, b, ab plus one special token, enough for the native library to load.
    const string TinyTokenizerJson = """
        {"version":"1.0","truncation":null,"padding":null,
         "added_tokens":[{"id":3,"content":"<eos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
         "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":{"type":"Fuse"},
         "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
                  "fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}
        """;

    [Fact]
    public void Tokenizer_json_is_preferred_when_present()
    {
        using var dir = new TempDir();
        dir.Write("tokenizer.json", TinyTokenizerJson);
        dir.Write("tokenizer_config.json", """{"eos_token":{"content":"<eos>","__type":"AddedToken"},"bos_token":null}""");
        using var tokenizer = TokenizerLoader.Load(dir.Path, modelVocabSize: 300);
        Assert.IsType<HuggingFaceTokenizer>(tokenizer);
        Assert.Equal(4, tokenizer.VocabSize);
        Assert.Equal([2, 0, 3], tokenizer.Encode("aba<eos>"));
        Assert.Equal("aba<eos>", tokenizer.Decode([2, 0, 3]));
        Assert.Equal(3, tokenizer.EosTokenId);
        Assert.Null(tokenizer.BosTokenId);
    }

    [Fact]
    public void Byte_tokenizer_is_the_fallback_only_when_the_vocab_fits_it()
    {
        using var dir = new TempDir();
        using (var tokenizer = TokenizerLoader.Load(dir.Path, ByteTokenizer.Size)) Assert.IsType<ByteTokenizer>(tokenizer);
        using (var tokenizer = TokenizerLoader.Load(dir.Path, TokenizerLoader.MaxByteTokenizerModelVocab)) Assert.IsType<ByteTokenizer>(tokenizer);

        foreach (int vocab in new[] { ByteTokenizer.Size - 1, TokenizerLoader.MaxByteTokenizerModelVocab + 1, 151936 })
        {
            var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(dir.Path, vocab));
            Assert.Contains(dir.Path, e.Message);
            Assert.Contains($"vocab_size={vocab}", e.Message);
        }
    }

    [Fact]
    public void Tokenizer_with_more_ids_than_the_model_is_rejected()
    {
        using var dir = new TempDir();
        string path = dir.Write("tokenizer.json", TinyTokenizerJson);
        var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(dir.Path, modelVocabSize: 3));
        Assert.Equal(path, e.File);
        Assert.Contains("4 ids", e.Message);
    }

    [Fact]
    public void Missing_folder_is_named()
    {
        string missing = Path.Combine(Path.GetTempPath(), $"e3-no-such-model-{Guid.NewGuid():N}");
        var e = Assert.Throws<ModelFormatException>(() => TokenizerLoader.Load(missing, 300));
        Assert.Equal(missing, e.File);
    }

    [Theory]
    [InlineData("{ not json", "json")]
    [InlineData("[1, 2]", "json")]
    [InlineData("""{"model":{"type":"BPE"}}""", "model.vocab")]
    [InlineData("""{"model":{"vocab":{"a":-4}}}""", "model.vocab[\"a\"]")]
    [InlineData("""{"model":{"vocab":{"a":0}},"added_tokens":[{"content":"x"}]}""", "added_tokens[0].id")]
    [InlineData("""{"model":{"vocab":{"a":0}},"post_processor":{"type":"Mystery"}}""", "post_processor.type")]
    [InlineData("""{"model":{"vocab":{"a":0}},"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{}}}""", "post_processor.special_tokens[\"<s>\"].ids")]
    public void Malformed_tokenizer_json_names_file_and_field(string content, string field)
    {
        using var dir = new TempDir();
        string path = dir.Write("tokenizer.json", content);
        var e = Assert.Throws<ModelFormatException>(() => HuggingFaceTokenizer.Load(dir.Path));
        Assert.Equal(path, e.File);
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void File_the_native_library_rejects_is_reported_with_its_path()
    {
        // Valid JSON with every field E3 reads, but a model type the tokenizers library does not know.
        using var dir = new TempDir();
        string path = dir.Write("tokenizer.json", TinyTokenizerJson.Replace("\"type\":\"BPE\"", "\"type\":\"NoSuchModel\""));
        var e = Assert.Throws<ModelFormatException>(() => HuggingFaceTokenizer.Load(dir.Path));
        Assert.Equal(path, e.File);
        Assert.Contains("tokenizers library", e.Message);
    }

    [Fact]
    public void Eos_token_missing_from_the_vocabulary_is_named()
    {
        using var dir = new TempDir();
        dir.Write("tokenizer.json", TinyTokenizerJson);
        string config = dir.Write("tokenizer_config.json", """{"eos_token":"</s>"}""");
        var e = Assert.Throws<ModelFormatException>(() => HuggingFaceTokenizer.Load(dir.Path));
        Assert.Equal(config, e.File);
        Assert.Equal("eos_token", e.Field);
        Assert.Contains("'</s>'", e.Message);
    }

    [Fact]
    public void Disposed_tokenizer_refuses_work()
    {
        using var dir = new TempDir();
        dir.Write("tokenizer.json", TinyTokenizerJson);
        var tokenizer = HuggingFaceTokenizer.Load(dir.Path);
        tokenizer.Dispose();
        tokenizer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => tokenizer.Encode("a"));
        Assert.Throws<ObjectDisposedException>(() => tokenizer.Decode([0]));
    }
}
