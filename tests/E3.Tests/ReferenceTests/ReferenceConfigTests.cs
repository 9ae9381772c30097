using E3.Tests.Reference;
using Xunit;

namespace E3.Tests.ReferenceTests;

public class ReferenceConfigTests
{
    // The published Qwen/Qwen3-0.6B config.json (abridged to the fields a loader must honour).
    private const string Qwen3SmallConfig = """
        {
          "architectures": ["Qwen3ForCausalLM"],
          "attention_bias": false,
          "attention_dropout": 0.0,
          "bos_token_id": 151643,
          "eos_token_id": 151645,
          "head_dim": 128,
          "hidden_act": "silu",
          "hidden_size": 1024,
          "initializer_range": 0.02,
          "intermediate_size": 3072,
          "max_position_embeddings": 40960,
          "max_window_layers": 28,
          "model_type": "qwen3",
          "num_attention_heads": 16,
          "num_hidden_layers": 28,
          "num_key_value_heads": 8,
          "rms_norm_eps": 1e-06,
          "rope_scaling": null,
          "rope_theta": 1000000,
          "sliding_window": null,
          "tie_word_embeddings": true,
          "torch_dtype": "bfloat16",
          "use_cache": true,
          "use_sliding_window": false,
          "vocab_size": 151936
        }
        """;

    [Fact]
    public void ReadsAPublishedQwen3Config()
    {
        using var folder = new ScratchFolder();
        var config = ReferenceConfig.Load(WriteConfig(folder, Qwen3SmallConfig));
        Assert.Equal(new ReferenceConfig("qwen3", 151936, 1024, 3072, 28, 16, 8, 128, 1e-6, 1_000_000, true, false), config);
        Assert.True(config.HasQkNorm);
        Assert.False(config.HasQkvBias);
    }

    [Fact]
    public void AppliesTransformersDefaultsAndNestedRopeTheta()
    {
        using var folder = new ScratchFolder();
        // No head_dim, no num_key_value_heads, no eps, no tie flag; theta only under rope_parameters (newer transformers).
        var config = ReferenceConfig.Load(WriteConfig(folder, """
            {"model_type": "llama", "vocab_size": 10, "hidden_size": 48, "intermediate_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 6,
             "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}
            """));
        Assert.Equal(8, config.HeadDim);
        Assert.Equal(6, config.NumKeyValueHeads);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.Equal(500000.0, config.RopeTheta);
        Assert.False(config.TieWordEmbeddings);
        Assert.False(config.HasOutputBias);
    }

    [Fact]
    public void Qwen2BiasesQkvButNotOutput()
    {
        var config = TinyModels.Config("qwen2", tied: false);
        Assert.True(config.HasQkvBias);
        Assert.False(config.HasOutputBias);
        Assert.False(config.HasQkNorm);
    }

    [Fact]
    public void SaveThenLoadRoundTripsEveryField()
    {
        using var folder = new ScratchFolder();
        foreach (var original in new[] { TinyModels.Config("qwen3", tied: true, attentionBias: true), TinyModels.Config("llama", false), TinyModels.Config("qwen2", true) })
        {
            string path = Path.Combine(folder.Path, "config.json");
            original.Save(path);
            Assert.Equal(original, ReferenceConfig.Load(path));
        }

        // Only the final file remains: the temp file was renamed into place.
        Assert.Equal(["config.json"], Directory.GetFiles(folder.Path).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData("""{"model_type": "llama"}""", "'vocab_size' is missing")]
    [InlineData("""{"model_type": "mistral"}""", "'model_type' has value \"mistral\"")]
    [InlineData("""{"model_type": "qwen3", "vocab_size": "big"}""", "'vocab_size' has value \"big\"")]
    [InlineData("""{"model_type": "qwen3", "vocab_size": 10.5}""", "'vocab_size' has value 10.5")]
    [InlineData("""{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 32.0}}""", "'rope_scaling.rope_type' has value \"llama3\"")]
    [InlineData("""{"model_type": "llama", "hidden_act": "gelu"}""", "'hidden_act' has value \"gelu\"")]
    [InlineData("""{"model_type": "llama", "vocab_size": 10, "hidden_size": 32, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3}""", "'num_key_value_heads' has value 3")]
    [InlineData("""{"model_type": "llama", "vocab_size": 0, "hidden_size": 32, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4}""", "'vocab_size' has value 0")]
    [InlineData("""[1, 2]""", "is not a JSON object")]
    [InlineData("""{"model_type": """, "is not valid JSON")]
    public void BadConfigNamesFileFieldAndValue(string json, string expected)
    {
        using var folder = new ScratchFolder();
        string path = WriteConfig(folder, json);
        var error = Assert.Throws<ReferenceCheckpointException>(() => ReferenceConfig.Load(path));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith(path, error.Message);
    }

    private static string WriteConfig(ScratchFolder folder, string json)
    {
        string path = Path.Combine(folder.Path, "config.json");
        File.WriteAllText(path, json);
        return path;
    }
}
