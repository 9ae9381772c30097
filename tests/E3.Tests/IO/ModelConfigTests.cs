using System.Text.Json.Nodes;
using E3.Model;
using Xunit;

namespace E3.Tests.IO;

/// <summary>config.json parsing: the fields the forward pass needs, and errors that name the file and the field.</summary>
public class ModelConfigTests
{
    /// <summary>A Qwen3-0.6B-shaped config; each test edits one field.</summary>
    static JsonObject Qwen3() => JsonNode.Parse("""
        {
          "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
          "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
          "head_dim": 128, "rms_norm_eps": 1e-06, "rope_theta": 1000000, "tie_word_embeddings": true,
          "max_position_embeddings": 40960, "torch_dtype": "bfloat16", "attention_bias": false
        }
        """)!.AsObject();

    static string Save(TempFolder folder, JsonObject json)
    {
        string path = folder.File("config.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    static ModelFormatException Rejected(JsonObject json, string field, params string[] fragments)
    {
        using var folder = new TempFolder();
        string path = Save(folder, json);
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Load(path));
        Assert.Equal(path, e.File);
        Assert.Equal(field, e.Field);
        Assert.StartsWith($"{path}: {field}: ", e.Message);
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
        return e;
    }

    [Fact]
    public void Qwen3ConfigParses()
    {
        using var folder = new TempFolder();
        string path = Save(folder, Qwen3());
        // A folder is read through its config.json.
        ModelConfig config = ModelConfig.Load(folder.Path);
        Assert.Equal(Architecture.Qwen3, config.Architecture);
        Assert.Equal(151936, config.VocabSize);
        Assert.Equal(1024, config.HiddenSize);
        Assert.Equal(3072, config.IntermediateSize);
        Assert.Equal(28, config.NumLayers);
        Assert.Equal(16, config.NumHeads);
        Assert.Equal(8, config.NumKvHeads);
        Assert.Equal(128, config.HeadDim);
        Assert.Equal(1e-6f, config.RmsNormEps);
        Assert.Equal(1_000_000f, config.RopeTheta);
        Assert.True(config.TieWordEmbeddings);
        Assert.True(config.HasQkNorm);
        Assert.False(config.QkvBias);
        Assert.Equal("bfloat16", config.TorchDtype);
        Assert.Equal(path, config.SourcePath);
    }

    [Fact]
    public void Qwen2HasQkvBiasAndLlamaAttentionBiasAddsOutputBias()
    {
        var qwen2 = Qwen3();
        qwen2["model_type"] = "qwen2";
        var parsed = ModelConfig.Parse(qwen2);
        Assert.True(parsed.QkvBias);
        Assert.False(parsed.OutputBias);
        Assert.False(parsed.HasQkNorm);

        var llama = Qwen3();
        llama["model_type"] = "llama";
        llama["attention_bias"] = true;
        var parsedLlama = ModelConfig.Parse(llama);
        Assert.True(parsedLlama.QkvBias);
        Assert.True(parsedLlama.OutputBias);
    }

    [Fact]
    public void UnknownModelType()
    {
        var json = Qwen3();
        json["model_type"] = "mistral";
        Rejected(json, "model_type", "'mistral'", "qwen3, llama, qwen2");
    }

    [Theory]
    [InlineData("model_type")]
    [InlineData("hidden_size")]
    [InlineData("num_attention_heads")]
    [InlineData("num_hidden_layers")]
    [InlineData("vocab_size")]
    [InlineData("intermediate_size")]
    public void MissingRequiredField(string field)
    {
        var json = Qwen3();
        json.Remove(field);
        Rejected(json, field, "missing");
    }

    [Fact]
    public void HeadDimAbsentIsHiddenOverHeads()
    {
        var json = Qwen3();
        json.Remove("head_dim");
        json["hidden_size"] = 2048;
        Assert.Equal(2048 / 16, ModelConfig.Parse(json).HeadDim);
    }

    [Fact]
    public void HeadDimAbsentAndHiddenNotDivisible()
    {
        var json = Qwen3();
        json.Remove("head_dim");
        json["hidden_size"] = 1000;
        json["num_attention_heads"] = 24;
        json["num_key_value_heads"] = 8;
        Rejected(json, "head_dim", "hidden_size=1000", "num_attention_heads=24");
    }

    [Fact]
    public void OddHeadDim()
    {
        var json = Qwen3();
        json["head_dim"] = 63;
        Rejected(json, "head_dim", "63");
    }

    [Fact]
    public void RopeThetaFromRopeParameters()
    {
        var json = Qwen3();
        json.Remove("rope_theta");
        json["rope_parameters"] = new JsonObject { ["rope_type"] = "default", ["rope_theta"] = 5_000_000.0 };
        Assert.Equal(5_000_000f, ModelConfig.Parse(json).RopeTheta);
    }

    [Fact]
    public void RopeThetaAbsentDefaultsToTenThousand()
    {
        var json = Qwen3();
        json.Remove("rope_theta");
        Assert.Equal(10_000f, ModelConfig.Parse(json).RopeTheta);
    }

    [Fact]
    public void ScaledRopeInRopeParametersIsRefused()
    {
        var json = Qwen3();
        json.Remove("rope_theta");
        json["rope_parameters"] = new JsonObject { ["rope_type"] = "yarn", ["rope_theta"] = 1e6, ["factor"] = 4.0 };
        Rejected(json, "rope_parameters.rope_type", "'yarn'");
    }

    [Fact]
    public void ScaledRopeInRopeScalingIsRefused()
    {
        var json = Qwen3();
        json["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = 8.0 };
        Rejected(json, "rope_scaling.rope_type", "'llama3'");
    }

    [Fact]
    public void NonNumericRopeTheta()
    {
        var json = Qwen3();
        json["rope_theta"] = "big";
        Rejected(json, "rope_theta", "\"big\"");
    }

    [Fact]
    public void KvHeadsNotDividingHeads()
    {
        var json = Qwen3();
        json["num_key_value_heads"] = 3;
        Rejected(json, "num_key_value_heads", "3 does not divide num_attention_heads=16");
    }

    [Fact]
    public void NonIntegerField()
    {
        var json = Qwen3();
        json["hidden_size"] = 1024.5;
        Rejected(json, "hidden_size", "1024.5");
    }

    [Fact]
    public void NonStringTorchDtype()
    {
        var json = Qwen3();
        json["torch_dtype"] = 16;
        Rejected(json, "torch_dtype", "16");
    }

    [Theory]
    [InlineData("torch_dtype", "int8")]
    [InlineData("dtype", "float8_e4m3fn")]
    public void ATorchDtypeThatIsNotAFloatTypeIsRefused(string field, string value)
    {
        var json = Qwen3();
        json.Remove("torch_dtype");
        json[field] = value;
        Rejected(json, field, value, "not float32, bfloat16 or float16");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void MaxPositionEmbeddingsMustBePositive(int value)
    {
        var json = Qwen3();
        json["max_position_embeddings"] = value;
        Rejected(json, "max_position_embeddings", $"{value} must be positive");
    }

    [Fact]
    public void LayerTypesCountMustMatchLayers()
    {
        var json = Qwen3();
        json["layer_types"] = new JsonArray("full_attention", "full_attention");
        Rejected(json, "layer_types", "2 entries", "num_hidden_layers=28");
    }

    [Theory]
    [InlineData("""{"model_type": "qwen3", "hidden_size": """, "malformed JSON")]
    [InlineData("[1, 2]", "top level is not an object")]
    public void TextThatIsNotAConfigObject(string text, string problem)
    {
        using var folder = new TempFolder();
        string path = folder.File("config.json");
        File.WriteAllText(path, text);
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Load(path));
        Assert.Equal(path, e.File);
        Assert.Equal("json", e.Field);
        Assert.StartsWith($"{path}: json: {problem}", e.Message);
    }

    [Fact]
    public void MissingFile()
    {
        using var folder = new TempFolder();
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Load(folder.Path));
        Assert.Contains(folder.File("config.json"), e.Message);
    }

    [Fact]
    public void HashIsStableAndSensitiveToContent()
    {
        var a = ModelConfig.Parse(Qwen3());
        var b = ModelConfig.Parse(Qwen3());
        var changed = Qwen3();
        changed["num_hidden_layers"] = 27;
        Assert.Equal(a.Hash(), b.Hash());
        Assert.NotEqual(a.Hash(), ModelConfig.Parse(changed).Hash());
        Assert.Matches("^[0-9a-f]{64}$", a.Hash());
    }

    [Fact]
    public void HashDoesNotDependOnHowTheJsonIsWritten()
    {
        // As Python's json module would rewrite it: other key order, other spellings of the same numbers.
        string dotnet = Qwen3().ToJsonString();
        var reordered = new JsonObject(Qwen3().Reverse().Select(p => KeyValuePair.Create(p.Key, p.Value?.DeepClone())));
        string python = reordered.ToJsonString().Replace("\"rms_norm_eps\":1e-06", "\"rms_norm_eps\": 0.000001")
            .Replace("\"num_hidden_layers\":28", "\"num_hidden_layers\": 28.0");
        Assert.NotEqual(dotnet, python);
        Assert.Contains("0.000001", python);
        Assert.Contains("28.0", python);
        Assert.Equal(ModelConfig.Parse(Qwen3()).Hash(), ModelConfig.Parse(JsonNode.Parse(python)!.AsObject()).Hash());
    }
}
