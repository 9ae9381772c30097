using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Tests.Support;
using Json.Schema;
using Xunit;

namespace E3.Tests.Cli;

/// <summary>
/// Every <c>e3 bench … --json</c> output against its published JSON Schema (bench/schema/), on the cpu and on a GPU
/// device (the emulator), so that the documents a benchmark runner codes against cannot drift from what e3 writes;
/// and the schemas against altered outputs, so that they are not vacuous.
/// </summary>
public sealed class BenchJsonSchemaTests : IDisposable
{
    static readonly Lazy<BuildOptions> Schemas = new(() =>
    {
        var options = new BuildOptions { SchemaRegistry = new SchemaRegistry() };
        // The environment first: the others refer to it by its $id.
        foreach (var name in new[] { "bench-environment", "bench-speedup", "bench-train", "bench-kernels" })
            JsonSchema.FromFile(SchemaPath(name), options);
        return options;
    });

    readonly TempDir _dir = new("e3-bench-schema");

    static string SchemaPath(string name) => Path.Combine(E3.Tests.Tokenization.NpmFixtures.RepoRoot, "bench", "schema", $"{name}.schema.json");

    static JsonSchema Schema(string name) =>
        Schemas.Value.SchemaRegistry.Get(new Uri($"urn:e3:schema:{name}")) as JsonSchema
        ?? throw new InvalidOperationException($"{name} is not registered");

    static void AssertValid(string schema, JsonNode document)
    {
        using var parsed = JsonDocument.Parse(document.ToJsonString());
        var result = Schema(schema).Evaluate(parsed.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List });
        var errors = (result.Details ?? []).Where(d => d.Errors is { Count: > 0 })
            .SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Key}: {e.Value}"));
        Assert.True(result.IsValid, $"{schema}: {string.Join("; ", errors)}\n{document}");
    }

    static bool IsValid(string schema, JsonNode document)
    {
        using var parsed = JsonDocument.Parse(document.ToJsonString());
        return Schema(schema).Evaluate(parsed.RootElement, new EvaluationOptions()).IsValid;
    }

    static JsonNode Run(params string[] args)
    {
        var r = CliProcess.RunWithEnvironment(new Dictionary<string, string?> { ["E3_EMU_LIB"] = null }, args);
        Assert.True(r.ExitCode == 0, $"e3 {string.Join(' ', args)}: {r.Stderr}");
        // Only what JSON requires is escaped: a version such as 1.0.0+commit stays readable.
        Assert.DoesNotContain("\\u002B", r.Stdout);
        return JsonNode.Parse(r.Stdout)!;
    }

    string Model()
    {
        string folder = _dir["model"];
        if (!Directory.Exists(folder))
            RandomModel.Write(new RandomModelSpec { Layers = 4, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = 120, InitStd = 0.1f, Seed = 4 }, folder);
        return folder;
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("emu")]
    public void SpeedupMatchesItsSchemaAndSaysWhereItRan(string device)
    {
        // Six repeats: the fewest that give each phase its interval, so the schema's object branch is checked too.
        var json = Run("bench", "speedup", "--model", Model(), "--drop", "1", "--prefill", "8", "--decode", "2", "--repeats", "6", "--device", device, "--json");
        AssertValid("bench-speedup", json);
        Assert.NotNull(json["decode"]!["paired_interval"]);
        var environment = json["environment"]!;
        Assert.StartsWith("1.", environment["e3_version"]!.GetValue<string>());
        Assert.Equal(Environment.ProcessorCount, environment["cpu"]!["logical_cores"]!.GetValue<int>());
        if (device == "cpu") Assert.Null(environment["gpu"]);
        else Assert.StartsWith("E3 CUDA emulator", environment["gpu"]!["name"]!.GetValue<string>());

        var noDecode = Run("bench", "speedup", "--model", Model(), "--drop", "1", "--prefill", "8", "--decode", "0", "--repeats", "1", "--device", device, "--json");
        AssertValid("bench-speedup", noDecode);
    }

    [Fact]
    public void TrainMatchesItsSchemaOnCpuAndEmu()
    {
        foreach (var device in new[] { "cpu", "emu" })
            AssertValid("bench-train", Run("bench", "train", "--model", Model(), "--drop", "2", "--seq", "8", "--repeats", "1", "--warmup", "1", "--device", device, "--json"));
        AssertValid("bench-train", Run("bench", "train", "--model", Model(), "--drop", "2", "--seq", "8", "--repeats", "1", "--warmup", "1", "--loss", "ce", "--json"));
    }

    [Theory]
    [InlineData("emu")]
    [InlineData("cpu")]
    public void KernelsMatchesItsSchema(string device)
    {
        var json = Run("bench", "kernels", "--device", device, "--repeats", "1", "--threads", "1", "--json");
        AssertValid("bench-kernels", json);
        Assert.Equal("e3.bench.kernels/1", json["schema"]!.GetValue<string>());
    }

    /// <summary>The schemas reject what a runner must not accept: a missing member, a wrong type, another version.</summary>
    [Fact]
    public void TheSchemasRejectAlteredOutputs()
    {
        var json = Run("bench", "speedup", "--model", Model(), "--drop", "1", "--prefill", "8", "--decode", "2", "--repeats", "1", "--json");
        Assert.True(IsValid("bench-speedup", json));

        JsonNode Altered(Action<JsonObject> change)
        {
            var copy = json.DeepClone().AsObject();
            change(copy);
            return copy;
        }
        Assert.False(IsValid("bench-speedup", Altered(j => j.Remove("environment"))));
        Assert.False(IsValid("bench-speedup", Altered(j => j["schema"] = "e3.bench.speedup/2")));
        Assert.False(IsValid("bench-speedup", Altered(j => j["prefill"]!.AsObject().Remove("paired_speedups"))));
        Assert.False(IsValid("bench-speedup", Altered(j => j["environment"]!["timestamp_utc"] = "yesterday")));
        Assert.False(IsValid("bench-speedup", Altered(j => j["environment"]!["cpu"]!["logical_cores"] = "two")));
        Assert.False(IsValid("bench-speedup", Altered(j => j["device"] = "tpu")));
        Assert.False(IsValid("bench-train", json));
    }

    public void Dispose() => _dir.Dispose();
}
