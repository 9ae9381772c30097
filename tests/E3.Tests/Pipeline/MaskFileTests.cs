using System.Text.Json.Nodes;
using E3.Model;
using E3.Pruning.Data;
using E3.Pruning.Masks;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Pipeline;

public class MaskFileTests
{
    static ModelConfig Config(int layers) => ModelConfig.Parse(JsonNode.Parse($$"""
        {"model_type":"qwen3","vocab_size":64,"hidden_size":32,"intermediate_size":64,"num_hidden_layers":{{layers}},
         "num_attention_heads":4,"num_key_value_heads":2,"head_dim":8,"rms_norm_eps":1e-6,"rope_theta":10000.0,
         "tie_word_embeddings":true,"max_position_embeddings":128}
        """)!.AsObject());

    [Fact]
    public void RoundTripsEveryField()
    {
        using var dir = new TempDir();
        var c = Config(8);
        var m = MaskFile.For(c, "e3", [6, 0, 2, 3, 5, 7]) with
        {
            Alpha = [1, 2, 3, 4, 5, 6, 7, 8], Tau = 0.25, Steps = 40, Tokens = 4096, Seed = 17,
            LossHistory = [new(0, 1.5), new(39, 0.25)],
        };
        m.Save(dir["m.json"]);
        var back = MaskFile.Load(dir["m.json"]);
        Assert.Equal([0, 2, 3, 5, 6, 7], back.Kept);
        Assert.Equal([1, 4], back.Dropped);
        Assert.Equal(m.Alpha, back.Alpha);
        Assert.Equal(0.25, back.Tau);
        Assert.Equal((40L, 4096L, (ulong?)17UL), (back.Steps, back.Tokens, back.Seed));
        Assert.Equal(m.LossHistory, back.LossHistory);
        Assert.Equal(c.Hash(), back.ConfigHash);
        back.EnsureMatches(c, "m.json");
        Assert.True(back.ToLayerMask().IsSkipped(4));
    }

    [Fact]
    public void AMaskForAnotherModelIsRefused()
    {
        using var dir = new TempDir();
        MaskFile.For(Config(8), "last", [0, 1, 2, 3, 4, 5]).Save(dir["m.json"]);
        var m = MaskFile.Load(dir["m.json"]);
        var other = Config(8).Json.DeepClone().AsObject();
        other["rope_theta"] = 5e5;
        var e = Assert.Throws<ModelFormatException>(() => m.EnsureMatches(ModelConfig.Parse(other), dir["m.json"]));
        Assert.Equal("model.config_hash", e.Field);
        Assert.Equal("num_layers", Assert.Throws<ModelFormatException>(() => m.EnsureMatches(Config(12), "m.json")).Field);
    }

    [Theory]
    [InlineData("kept", "[0,1,9]", "kept[2]")]
    [InlineData("kept", "[0,2,1]", "kept[2]")]
    [InlineData("keep", "5", "keep")]
    [InlineData("dropped", "[2]", "dropped")]
    [InlineData("format_version", "2", "format_version")]
    [InlineData("alpha", "[1,2]", "alpha")]
    [InlineData("tau", "-1", "tau")]
    [InlineData("kept", "[]", "keep")]
    public void LyingFieldsAreNamed(string field, string json, string expectedField)
    {
        using var dir = new TempDir();
        MaskFile.For(Config(4), "e3", [0, 1, 2]).Save(dir["m.json"]);
        var o = JsonNode.Parse(File.ReadAllText(dir["m.json"]))!.AsObject();
        o[field] = JsonNode.Parse(json);
        if (field == "kept" && json == "[]") o["keep"] = 0;
        File.WriteAllText(dir["m.json"], o.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => MaskFile.Load(dir["m.json"]));
        Assert.Equal(expectedField, e.Field);
        Assert.Contains(dir["m.json"], e.Message);
    }

    [Fact]
    public void TruncatedFileIsAClearError()
    {
        using var dir = new TempDir();
        MaskFile.For(Config(4), "e3", [0, 1, 2]).Save(dir["m.json"]);
        var text = File.ReadAllText(dir["m.json"]);
        File.WriteAllText(dir["m.json"], text[..(text.Length / 2)]);
        Assert.Equal("(json)", Assert.Throws<ModelFormatException>(() => MaskFile.Load(dir["m.json"])).Field);
    }
}

public class TokenWindowsTests
{
    [Fact]
    public void BatchesDependOnlyOnTheStepAndTargetsAreShiftedInputs()
    {
        var tokens = Enumerable.Range(0, 1000).ToArray(); // token value = position, so windows are checkable
        var w = new TokenWindows(tokens, 16, 3, seed: 5);
        int[] a = new int[48], t = new int[48], again = new int[48];
        var starts = new HashSet<int>();
        for (long step = 0; step < 50; step++)
        {
            w.Fill(step, a, t);
            new TokenWindows(tokens, 16, 3, seed: 5).Fill(step, again, []);
            Assert.Equal(a, again);
            for (int b = 0; b < 3; b++)
            {
                int s = a[b * 16];
                starts.Add(s);
                Assert.InRange(s, 0, 1000 - 17);
                for (int i = 0; i < 16; i++)
                {
                    Assert.Equal(s + i, a[b * 16 + i]);
                    Assert.Equal(s + i + 1, t[b * 16 + i]);
                }
            }
        }
        Assert.True(starts.Count > 100, $"only {starts.Count} distinct window starts in 150 draws");
        new TokenWindows(tokens, 16, 3, seed: 6).Fill(0, again, []);
        w.Fill(0, a, []);
        Assert.NotEqual(a, again);
    }

    [Fact]
    public void TooShortDataNamesTheSource()
    {
        var e = Assert.Throws<InvalidDataException>(() => new TokenWindows(new int[10], 16, 1, 0, "data.txt"));
        Assert.Contains("data.txt", e.Message);
    }
}
