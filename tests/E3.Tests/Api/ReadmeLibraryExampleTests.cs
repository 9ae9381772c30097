using System.Reflection;
using System.Text.RegularExpressions;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Pruning.Masks;
using E3.Tests.Support;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace E3.Tests.Api;

/// <summary>
/// The README's "As a library" program is what a tool linking E3 would write. It is compiled here as a separate
/// assembly, which is not one of the engine's friends, so it sees the public API only, exactly as such a tool does;
/// then it runs on the demo model. A README example that uses something internal, or no longer compiles, or fails,
/// fails this test, and so does an API change that breaks the documented use.
/// </summary>
public sealed partial class ReadmeLibraryExampleTests
{
    static string Root => Tokenization.NpmFixtures.RepoRoot;

    [Fact]
    public void TheExampleCompilesAgainstThePublicApiAloneAndRunsOnTheDemoModel()
    {
        string source = ExampleSource();
        var assembly = Compile(source);

        string demo = Path.Combine(Root, "tests", "fixtures", "demo");
        using var output = new TempDir("e3-readme");
        assembly.EntryPoint!.Invoke(null, [new[] { demo, Path.Combine(demo, "heldout-revelation.txt"), output.Path }]);

        // What it wrote: a 9-of-12 mask, a healed model whose kept layers were trained, and a pruned checkpoint of the
        // healed one that computes what the healed model with that mask does.
        var mask = MaskFile.Load(output["mask.json"]);
        Assert.Equal(9, mask.Kept.Count);
        using var backend = new CpuBackend(2);
        using var full = DecoderModel.Load(demo, backend);
        using var healed = DecoderModel.Load(output["healed"], backend);
        using var pruned = DecoderModel.Load(output["pruned"], backend);
        Assert.Equal(9, pruned.Config.NumLayers);
        int[] tokens = [72, 101, 32, 115, 97, 105, 100, 44];
        var healedLogits = healed.Forward(tokens, mask.ToLayerMask());
        Assert.NotEqual(full.Forward(tokens, mask.ToLayerMask()), healedLogits); // the distillation changed the kept layers
        // ... and only them: a dropped layer's weights are frozen, so the healed folder holds them unchanged.
        int dropped = mask.Dropped[0];
        using var fullWeights = E3.Model.IO.SafeTensorsCheckpoint.Open(demo);
        using var healedWeights = E3.Model.IO.SafeTensorsCheckpoint.Open(output["healed"]);
        string name = $"model.layers.{dropped}.mlp.down_proj.weight";
        Assert.True(fullWeights.GetBytes(name).SequenceEqual(healedWeights.GetBytes(name)), $"{name} of a dropped layer changed");
        // The same fp32 operations in the same order on the same weights: equal bit for bit.
        Assert.Equal(healedLogits, pruned.Forward(tokens));
    }

    [Fact]
    public void TheOneCallPipelineCompilesAgainstThePublicApiAloneAndRunsWithItsDefaults()
    {
        var assembly = Compile(ExampleSource("#### The whole job in one call"));
        using var dir = new TempDir("e3-readme");
        // A small random model: the defaults' budgets (16k search tokens, 40k distillation tokens per mask) run in seconds.
        RandomModel.Write(new RandomModelSpec { Layers = 8, Hidden = 32, Heads = 2, KvHeads = 1, HeadDim = 16, Intermediate = 64, Vocab = 128, Seed = 11, InitStd = 0.2f }, dir["model"]);
        var rng = new Random(3);
        E3.Model.IO.TokenFile.WriteBin(dir["data.bin"], Enumerable.Range(0, 6000).Select(_ => rng.Next(128)).ToArray());
        assembly.EntryPoint!.Invoke(null, [new[] { dir["model"], dir["data.bin"], dir["out"] }]);

        // Prune = 0.25 of 8 layers drops 2, and the healed model keeps the other 6.
        var mask = MaskFile.Load(Path.Combine(dir["out"], "masks", "e3.json"));
        Assert.Equal(6, mask.Keep);
        Assert.Equal(6, ModelConfig.Load(Path.Combine(dir["out"], "model-e3")).NumLayers);
        Assert.True(File.Exists(Path.Combine(dir["out"], "report.md")));
    }

    [Fact]
    public void AnInternalTypeInTheExampleDoesNotCompile()
    {
        // The check above would be empty if the compilation could see internals: it cannot.
        string source = ExampleSource().Replace("using var device = ComputeDevice.Open(", "using var backend = new E3.Backends.Cpu.CpuBackend(); using var device = ComputeDevice.Open(");
        var e = Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => Compile(source));
        Assert.Contains("CpuBackend", e.Message);
        Assert.Contains("CS0122", e.Message); // inaccessible due to its protection level
    }

    /// <summary>The first C# block under the README's <paramref name="heading"/>.</summary>
    static string ExampleSource(string heading = "### As a library")
    {
        string readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        int section = readme.IndexOf(heading + "\n", StringComparison.Ordinal);
        Assert.True(section >= 0, $"README.md has no \"{heading}\" section");
        var block = CSharpBlock().Match(readme, section);
        Assert.True(block.Success, $"README.md's \"{heading}\" section has no ```csharp block");
        return block.Groups[1].Value;
    }

    /// <summary>
    /// Compiles <paramref name="source"/> as a console program named like no friend of the engine, against the framework
    /// and the engine's assemblies, with the implicit usings an SDK console project has.
    /// </summary>
    static Assembly Compile(string source)
    {
        const string implicitUsings = "global using System; global using System.IO; global using System.Linq; global using System.Collections.Generic;";
        // The framework and the five engine assemblies, nothing else: not the CLI's or the tests' public types.
        string[] engine = ["E3.Backends.dll", "E3.Interop.dll", "E3.Model.dll", "E3.Optim.dll", "E3.Pruning.dll"];
        string framework = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => p.EndsWith(".dll", StringComparison.Ordinal)
                && (Path.GetDirectoryName(p) == framework || engine.Contains(Path.GetFileName(p))))
            .Select(p => MetadataReference.CreateFromFile(p));
        var parse = new CSharpParseOptions(LanguageVersion.Latest);
        var compilation = CSharpCompilation.Create("ReadmeLibraryExample",
            [CSharpSyntaxTree.ParseText(implicitUsings, parse), CSharpSyntaxTree.ParseText(source, parse, path: "README.md")],
            references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image);
        var errors = emitted.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        Assert.True(emitted.Success, "the README's library example does not compile against E3's public API:\n" + string.Join('\n', errors));
        return Assembly.Load(image.ToArray());
    }

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
