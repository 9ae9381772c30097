using Xunit;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Tokenization;

namespace E3.Tests.Tokenization;

/// <summary>
/// <see cref="HuggingFaceTokenizer"/> behaviour beyond the corpus comparison, on Qwen3's real tokenizer.json with
/// @lenml/tokenizers (JavaScript) as the reference where one is needed.
/// </summary>
public sealed class HuggingFaceTokenizerTests(Qwen3Fixture qwen) : IClassFixture<Qwen3Fixture>
{
    [Fact]
    public void Digits_are_split_one_per_token()
    {
        var ids = qwen.Tokenizer.Encode("1234567890");
        Assert.Equal(10, ids.Length);
        for (int i = 0; i < 10; i++) Assert.Equal("1234567890"[i].ToString(), qwen.Tokenizer.Decode(ids.AsSpan(i, 1)));
    }

    [Fact]
    public void Special_tokens_and_ids_agree_with_the_reference()
    {
        var tokenizer = qwen.Tokenizer;
        string[] names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
        var reference = NpmFixtures.EncodeWithReference(NpmFixtures.Qwen3, names);
        for (int i = 0; i < names.Length; i++)
        {
            int id = Assert.Single(reference[i].Ids);
            Assert.Equal(id, tokenizer.SpecialTokens[names[i]]);
            Assert.Equal(names[i], tokenizer.Decode([id]));
        }
        // tokenizer_config.json names <|im_end|> as eos_token and no bos_token.
        Assert.Equal(tokenizer.SpecialTokens["<|im_end|>"], tokenizer.EosTokenId);
        Assert.Null(tokenizer.BosTokenId);
        // <think> is an added token but not special: it is not listed, yet encodes as one id and decodes back.
        Assert.False(tokenizer.SpecialTokens.ContainsKey("<think>"));
        Assert.Equal("<think>", tokenizer.Decode(tokenizer.Encode("<think>")));
        Assert.Single(tokenizer.Encode("<think>"));
    }

    [Fact]
    public void Tokens_that_cut_a_character_decode_to_replacement_characters()
    {
        // Byte-level BPE spells a rare emoji with several byte tokens; each alone is invalid UTF-8.
        const string emoji = "\U0001FAE8";
        var ids = qwen.Tokenizer.Encode(emoji);
        Assert.True(ids.Length > 1, $"expected several byte tokens, got {ids.Length}");
        Assert.Equal(emoji, qwen.Tokenizer.Decode(ids));
        Assert.All(ids, id => Assert.Matches("^\uFFFD+$", qwen.Tokenizer.Decode([id])));
    }

    [Fact]
    public void VocabSize_is_one_past_the_largest_id_in_the_file()
    {
        var json = JsonNode.Parse(File.ReadAllText(NpmFixtures.RequireQwen3TokenizerJson()))!;
        int maxVocab = json["model"]!["vocab"]!.AsObject().Max(kv => kv.Value!.GetValue<int>());
        int maxAdded = json["added_tokens"]!.AsArray().Max(t => t!["id"]!.GetValue<int>());
        Assert.Equal(Math.Max(maxVocab, maxAdded) + 1, qwen.Tokenizer.VocabSize);
    }

    [Fact]
    public void AddSpecialTokens_adds_nothing_for_qwen()
    {
        var text = TokenizerCorpus.Cases.Single(c => c.Name == "english").Text;
        Assert.Equal(qwen.Tokenizer.Encode(text), qwen.Tokenizer.Encode(text, addSpecialTokens: true));
    }

    [Fact]
    public void Decode_rejects_ids_outside_the_vocabulary()
    {
        var tokenizer = qwen.Tokenizer;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([9707, tokenizer.VocabSize]));
        Assert.Contains("position 1", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([-1]));
    }

    [Fact]
    public void Lone_surrogates_encode_as_the_replacement_character()
    {
        // A lone surrogate is not text; any UTF-8 encoder writes U+FFFD for it, and so does the tokenizer.
        Assert.Equal(qwen.Tokenizer.Encode("a\uFFFDb\uFFFD"), qwen.Tokenizer.Encode("a\uD800b\uDC00"));
    }

    [Fact]
    public void Post_processor_template_is_applied_only_on_request_and_truncation_is_ignored()
    {
        // Qwen3's file with a Llama-3-style template (BOS before, EOS after) and a truncation that would cut every
        // text to 2 tokens: encoding without special tokens must still equal the reference ids in full.
        var json = JsonNode.Parse(File.ReadAllText(NpmFixtures.RequireQwen3TokenizerJson()))!.AsObject();
        json["post_processor"] = JsonNode.Parse("""
            {"type":"Sequence","processors":[
              {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
              {"type":"TemplateProcessing",
               "single":[{"SpecialToken":{"id":"<|endoftext|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"<|im_end|>","type_id":0}}],
               "pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],
               "special_tokens":{"<|endoftext|>":{"id":"<|endoftext|>","ids":[151643],"tokens":["<|endoftext|>"]},
                                 "<|im_end|>":{"id":"<|im_end|>","ids":[151645],"tokens":["<|im_end|>"]}}}]}
            """);
        json["truncation"] = JsonNode.Parse("""{"direction":"Right","max_length":2,"strategy":"LongestFirst","stride":0}""");
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "tokenizer.json");
        File.WriteAllText(path, json.ToJsonString());

        using var tokenizer = HuggingFaceTokenizer.Load(dir.Path);
        const string name = "python";
        var text = TokenizerCorpus.Cases.Single(c => c.Name == name).Text;
        var expected = qwen.ReferenceFor(name).Ids;
        Assert.Equal(expected, tokenizer.Encode(text));
        Assert.Equal([151643, .. expected, 151645], tokenizer.Encode(text, addSpecialTokens: true));
        // Without tokenizer_config.json the template's single prefix token is the BOS.
        Assert.Equal(151643, tokenizer.BosTokenId);
        Assert.Null(tokenizer.EosTokenId);
        Assert.DoesNotContain(Directory.GetFiles(Path.GetTempPath(), "e3-tokenizer-*.json"), f => File.GetLastWriteTimeUtc(f) > dir.Created);
    }
}
