using System.Text.Json.Nodes;
using E3.Backends.Cpu;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Model.IO;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Cli;

/// <summary>The e3 executable end to end: outputs equal the library's, bad input exits 1 with a clear message and no output.</summary>
public sealed class CliTests : IDisposable
{
    readonly TempDir _dir = new("e3-cli");

    string InitModel(string name = "m", params string[] extra)
    {
        string path = _dir[name];
        var r = CliProcess.Run(["model", "init", "--arch", "qwen3", "--layers", "4", "--hidden", "32", "--heads", "4", "--kv-heads", "2",
            "--intermediate", "64", "--vocab", "50", "--seed", "5", "--init-std", "0.2", "--out", path, .. extra]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        return path;
    }

    [Fact]
    public void ForwardWritesTheSameLogitsAsTheLibrary()
    {
        string model = InitModel();
        string npy = _dir["logits.npy"];
        var r = CliProcess.Run("forward", "--model", model, "--tokens", "1,2,3,49", "--drop", "2", "--out", npy);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var arr = NpyFile.Read<float>(npy);
        Assert.Equal(new long[] { 4, 50 }, arr.Shape);
        using var cpu = new CpuBackend();
        using var m = DecoderModel.Load(model, cpu);
        Assert.Equal(m.Forward([1, 2, 3, 49], LayerMask.Dropping(4, [2])), arr.Data);
    }

    [Fact]
    public void TokenOutsideVocabularyFailsWithoutOutput()
    {
        string model = InitModel();
        string npy = _dir["bad.npy"];
        var r = CliProcess.Run("forward", "--model", model, "--tokens", "1,50", "--out", npy);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--tokens[1] = 50", r.Stderr);
        Assert.False(File.Exists(npy));
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.tmp*"));
    }

    [Fact]
    public void DropIndexOutOfRangeFails()
    {
        string model = InitModel();
        var r = CliProcess.Run("forward", "--model", model, "--tokens", "1", "--drop", "4", "--out", _dir["x.npy"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--drop: layer 4 is out of range", r.Stderr);
    }

    [Fact]
    public void UnknownOptionIsAUsageError()
    {
        var r = CliProcess.Run("forward", "--no-such-option");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--no-such-option", r.Stderr);
    }

    [Fact]
    public void ModelInitRefusesUnknownArchitectureAndNonEmptyFolder()
    {
        var r = CliProcess.Run("model", "init", "--arch", "gpt2", "--out", _dir["g"]);
        Assert.Equal(2, r.ExitCode); // an option value the option does not accept: a usage error
        Assert.Contains("gpt2", r.Stderr);
        string model = InitModel();
        r = CliProcess.Run("model", "init", "--out", model);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("not empty", r.Stderr);
    }

    [Fact]
    public void TruncatedCheckpointIsAClearError()
    {
        string model = InitModel();
        string st = Path.Combine(model, "model.safetensors");
        var bytes = File.ReadAllBytes(st);
        File.WriteAllBytes(st, bytes.AsSpan(0, bytes.Length - 100).ToArray());
        var r = CliProcess.Run("forward", "--model", model, "--tokens", "1", "--out", _dir["t.npy"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("model.safetensors", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr); // a message, not a stack trace
    }

    [Fact]
    public void EvalPerplexityMatchesAnIndependentComputation()
    {
        string model = InitModel();
        var rng = new Random(9);
        int[] ids = Enumerable.Range(0, 40).Select(_ => rng.Next(50)).ToArray();
        string bin = _dir["tokens.bin"];
        File.WriteAllBytes(bin, ids.SelectMany(i => BitConverter.GetBytes((uint)i)).ToArray());
        var r = CliProcess.Run("eval", "--model", model, "--data", bin, "--window", "16", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var json = JsonNode.Parse(r.Stdout)!;
        // Independent: windows of 16, each scoring its tokens 1..15 with a double log-softmax.
        using var cpu = new CpuBackend();
        using var m = DecoderModel.Load(model, cpu);
        double nll = 0; int n = 0;
        for (int s = 0; s + 1 < ids.Length; s += 16)
        {
            var w = ids.AsSpan(s, Math.Min(16, ids.Length - s)).ToArray();
            float[] z = m.Forward(w);
            for (int t = 0; t + 1 < w.Length; t++)
            {
                var row = z.AsSpan(t * 50, 50).ToArray().Select(x => (double)x).ToArray();
                double max = row.Max();
                nll -= row[w[t + 1]] - max - Math.Log(row.Sum(x => Math.Exp(x - max)));
                n++;
            }
        }
        Assert.Equal(n, json["tokens"]!.GetValue<long>());
        // The engine subtracts the row max in fp32 before going to double: each term may differ by ~1 ulp of |z|
        // (≈ 6e-8 relative), so the perplexity agrees to 1e-6 relative, not to double precision.
        double expected = Math.Exp(nll / n), actual = json["perplexity"]!.GetValue<double>();
        Assert.True(Math.Abs(actual - expected) <= 1e-6 * expected, $"perplexity {actual} vs independent {expected}");
    }

    [Fact]
    public void EvalRejectsTokenFileOutsideVocabulary()
    {
        string model = InitModel();
        string bin = _dir["bad.bin"];
        File.WriteAllBytes(bin, new uint[] { 1, 2, 77 }.SelectMany(BitConverter.GetBytes).ToArray());
        var r = CliProcess.Run("eval", "--model", model, "--data", bin);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("bad.bin", r.Stderr);
        Assert.Contains("77", r.Stderr);
    }

    static double[] Doubles(JsonNode array) => array.AsArray().Select(x => x!.GetValue<double>()).ToArray();

    [Fact]
    public void SpeedupBenchPrintsTheDocumentedJson()
    {
        string model = InitModel();
        var r = CliProcess.Run("bench", "speedup", "--model", model, "--prune", "0.25", "--prefill", "8", "--decode", "4", "--repeats", "3", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(4, j["layers"]!.GetValue<int>());
        Assert.Equal(new[] { 3 }, j["dropped"]!.AsArray().Select(x => x!.GetValue<int>()));
        foreach (var (phase, tokens) in new[] { ("prefill", 8), ("decode", 4) })
        {
            double full = j[phase]!["full_tps"]!.GetValue<double>(), pruned = j[phase]!["pruned_tps"]!.GetValue<double>();
            Assert.True(full > 0 && pruned > 0);
            Assert.Equal(pruned / full, j[phase]!["speedup"]!.GetValue<double>(), 1e-9);
            // The rates are the tokens over the median of the per-repeat times, and each repeat's ratio is its own pair's.
            double[] fullSeconds = Doubles(j[phase]!["full_seconds"]!), prunedSeconds = Doubles(j[phase]!["pruned_seconds"]!);
            Assert.Equal(3, fullSeconds.Length);
            Assert.Equal(3, prunedSeconds.Length);
            Assert.Equal(tokens / fullSeconds.Order().ElementAt(1), full, 1e-9 * full);
            Assert.Equal(tokens / prunedSeconds.Order().ElementAt(1), pruned, 1e-9 * pruned);
            Assert.Equal(fullSeconds.Zip(prunedSeconds, (f, p) => f / p), Doubles(j[phase]!["paired_speedups"]!));
            // The roofline counts the head that no mask removes: above 1, below layers / kept.
            Assert.InRange(j[phase]!["roofline_speedup"]!.GetValue<double>(), 1.0, j["ideal_speedup"]!.GetValue<double>() - 1e-6);
        }
        // --decode 0 times the prefill alone (as the transformers comparison does): decode is null, not a NaN ratio.
        var prefillOnly = CliProcess.Run("bench", "speedup", "--model", model, "--prune", "0.25", "--prefill", "8", "--decode", "0", "--repeats", "1", "--json");
        Assert.True(prefillOnly.ExitCode == 0, prefillOnly.Stderr);
        var p = JsonNode.Parse(prefillOnly.Stdout)!;
        Assert.Null(p["decode"]);
        Assert.True(p["prefill"]!["full_tps"]!.GetValue<double>() > 0);
    }

    /// <summary>A model whose vocabulary of at least 258 the byte tokenizer serves (no tokenizer.json), for text in and out.</summary>
    string InitTextModel(string name, int layers, int vocab)
    {
        string path = _dir[name];
        var init = CliProcess.Run("model", "init", "--layers", $"{layers}", "--hidden", "32", "--heads", "4", "--kv-heads", "2",
            "--intermediate", "64", "--vocab", $"{vocab}", "--seed", "2", "--init-std", "0.3", "--out", path);
        Assert.True(init.ExitCode == 0, init.Stderr);
        return path;
    }

    [Fact]
    public void GenerateWithTheByteTokenizerMatchesLibraryGreedyDecoding()
    {
        // vocab 258 = 256 bytes + BOS/EOS: the byte-level tokenizer serves a model without tokenizer.json.
        string model = InitTextModel("bytes", layers: 3, vocab: 258);
        var r = CliProcess.Run("generate", "--model", model, "--prompt", "In the beginning", "--max-new", "6", "--drop", "1", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonNode.Parse(r.Stdout)!;
        int[] prompt = j["prompt_tokens"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        Assert.Equal("In the beginning"u8.ToArray().Select(b => (int)b), prompt);
        using var cpu = new CpuBackend();
        using var m = DecoderModel.Load(model, cpu);
        int[] expected = GreedyGenerator.Generate(m, prompt, 6, LayerMask.Dropping(3, [1]), eos: 257);
        Assert.Equal(expected, j["generated_tokens"]!.AsArray().Select(n => n!.GetValue<int>()));
    }

    [Fact]
    public void GenerateSamplesReproduciblyBySeedAndRefusesBadOptions()
    {
        string model = InitTextModel("sampled", layers: 2, vocab: 258);
        string[] Tokens(params string[] extra)
        {
            var r = CliProcess.Run(["generate", "--model", model, "--prompt", "And", "--max-new", "12", "--json", .. extra]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            return JsonNode.Parse(r.Stdout)!["generated_tokens"]!.AsArray().Select(n => n!.ToJsonString()).ToArray();
        }
        var first = Tokens("--temperature", "1.5", "--seed", "4");
        Assert.Equal(first, Tokens("--temperature", "1.5", "--seed", "4"));
        Assert.NotEqual(first, Tokens("--temperature", "1.5", "--seed", "5")); // 12 draws at T=1.5 from 258 tokens
        // Top-1 keeps only the most likely token: the greedy text, whatever the seed.
        Assert.Equal(Tokens(), Tokens("--temperature", "2", "--top-k", "1", "--seed", "9"));

        foreach (var (args, message) in new[]
        {
            (new[] { "--temperature", "1", "--top-k", "65" }, "--top-k: 65 must lie in 0..64"),
            (new[] { "--temperature", "1", "--top-p", "0" }, "--top-p: 0 must lie in (0, 1]"),
            (new[] { "--temperature", "-1" }, "--temperature: -1 must be 0 (greedy) or finite and >= 0.001"),
            (new[] { "--top-k", "5" }, "--top-k, --top-p and --seed sample: give --temperature above 0 with them"),
            (new[] { "--seed", "3" }, "--top-k, --top-p and --seed sample: give --temperature above 0 with them"),
        })
        {
            var r = CliProcess.Run(["generate", "--model", model, "--prompt", "And", .. args]);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains(message, r.Stderr);
        }
    }

    [Fact]
    public void GenerateWritesIdsTheTokenizerLacksInsteadOfFailing()
    {
        // vocab 300 against the byte tokenizer's 258, as Qwen3's 151,936 rows against 151,669 tokens: the padding rows
        // can win the argmax; their ids are written as <|id:N|> between the decoded runs.
        string model = InitTextModel("wide", layers: 2, vocab: 300);
        var r = CliProcess.Run("generate", "--model", model, "--prompt", "hi", "--max-new", "24", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonNode.Parse(r.Stdout)!;
        int[] generated = j["generated_tokens"]!.AsArray().Select(n => n!.GetValue<int>()).ToArray();
        Assert.Contains(generated, id => id >= 258); // so the case is really exercised
        // Each maximal run of decodable ids is decoded as a whole (a UTF-8 character may span bytes).
        var tokenizer = new E3.Model.Tokenization.ByteTokenizer();
        var want = new System.Text.StringBuilder();
        var run = new List<int>();
        foreach (int id in generated.Append(-1))
        {
            if (id is >= 0 and < 258) { run.Add(id); continue; }
            want.Append(tokenizer.Decode(run.ToArray()));
            run.Clear();
            if (id >= 0) want.Append($"<|id:{id}|>");
        }
        Assert.Equal(want.ToString(), j["text"]!.GetValue<string>());
    }

    [Fact]
    public void AnErrorIsOneLineEvenWhenTheExceptionSpansSeveral()
    {
        // ArgumentOutOfRangeException puts "Actual value was …" on a second line.
        string model = InitModel();
        var r = CliProcess.Run("baseline", "--method", "last", "--model", model, "--prune", "1.0", "--out", _dir["never.json"]);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("Actual value was 1", r.Stderr);
        Assert.False(File.Exists(_dir["never.json"]));
    }

    [Fact]
    public void AnOutputThatCannotBeWrittenIsRefusedBeforeAnyWork()
    {
        // Before: the whole job ran, then the rename failed naming a .tmp file the user never gave.
        string model = InitModel();
        string missing = _dir["nowhere/x.npy"];
        var cases = new (string[] Args, string Message)[]
        {
            (["forward", "--model", model, "--tokens", "1", "--out", missing], $"--out: the folder {Path.GetDirectoryName(missing)} does not exist"),
            (["forward", "--model", model, "--tokens", "1", "--out", ""], "--out: an empty path names no file"),
            (["forward", "--model", model, "--tokens", "1", "--out", _dir.Path], $"--out: {_dir.Path} is a folder, not a file"),
            (["baseline", "--method", "last", "--model", model, "--prune", "0.25", "--out", _dir["nowhere/mask.json"]], "does not exist"),
            (["model", "init", "--out", Path.Combine(model, "config.json")], "is a file, not a folder"),
        };
        foreach (var (args, message) in cases)
        {
            var r = CliProcess.Run(args);
            Assert.True(r.ExitCode == 2, $"{string.Join(' ', args)}: exit {r.ExitCode}: {r.Stderr}");
            Assert.Contains(message, r.Stderr);
        }
        Assert.False(Directory.Exists(_dir["nowhere"]));
    }

    [Fact]
    public void ValuesThatMeanNothingAreRefusedNamingTheOption()
    {
        string model = InitModel();
        File.WriteAllBytes(_dir["ids.bin"], Enumerable.Range(0, 400).SelectMany(i => BitConverter.GetBytes((uint)(i * 7 % 50))).ToArray());
        string[] distill = ["distill", "--teacher", model, "--student", model, "--data", _dir["ids.bin"], "--tokens", "64", "--seq", "8", "--batch", "2",
            "--out", _dir["never"]];
        var cases = new (string[] Args, int Exit, string Message)[]
        {
            (["forward", "--model", model, "--tokens", "1,,2", "--out", _dir["t.npy"]], 1, "--tokens: '' (position 1) is not a non-negative token id"),
            (["forward", "--model", model, "--tokens", "1", "--drop", "1,,2", "--out", _dir["t.npy"]], 1, "--drop: '' in '1,,2' is not a layer index"),
            (["forward", "--model", model, "--tokens", "1", "--threads", "-3", "--out", _dir["t.npy"]], 2, "--threads: -3 must be at least 0"),
            (["model", "init", "--heads", "0", "--out", _dir["m0"]], 2, "--heads: 0 must be at least 1"),
            (["model", "init", "--init-std", "NaN", "--out", _dir["m0"]], 2, "--init-std: NaN must be finite and > 0"),
            (["model", "init", "--dtype", "int8", "--out", _dir["m0"]], 2, "int8"),
            ([.. distill, "--freeze", "model.layer.*"], 1, "--freeze 'model.layer.*' matches no tensor of the model"),
            ([.. distill, "--kd-temperature", "0"], 2, "--kd-temperature: 0 must be finite and > 0"),
            ([.. distill, "--kd-fraction", "1.5"], 2, "--kd-fraction: 1.5 must be at most 1"),
            (["bench", "speedup", "--model", model, "--drop", "0,1,2,3", "--prefill", "4", "--decode", "2"], 2, "the mask drops all 4 layers"),
            (["bench", "speedup", "--arch", "qwen3", "--hidden", "64", "--heads", "3", "--prune", "0.25"], 2, "--hidden 64 is not divisible by --heads 3"),
        };
        foreach (var (args, exit, message) in cases)
        {
            var r = CliProcess.Run(args);
            Assert.True(r.ExitCode == exit, $"{string.Join(' ', args)}: exit {r.ExitCode}: {r.Stderr}");
            Assert.Contains(message, r.Stderr);
        }
        Assert.False(File.Exists(_dir["t.npy"]));
        Assert.False(Directory.Exists(_dir["never"]));
        Assert.False(Directory.Exists(_dir["m0"]));
    }

    [Fact]
    public void DoctorReportsTheMachine()
    {
        var r = CliProcess.Run("doctor", "--json");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var j = JsonNode.Parse(r.Stdout)!;
        Assert.Equal(Environment.ProcessorCount, j["cpu"]!["logical_cores"]!.GetValue<int>());
        // No GPU here: the driver part must say why instead of failing, and NVRTC (installed by build.sh) is found.
        Assert.False(string.IsNullOrEmpty(j["cuda"]!["driver_problem"]?.GetValue<string>()));
        Assert.Contains(90, j["cuda"]!["nvrtc_architectures"]!.AsArray().Select(n => n!.GetValue<int>()));
    }

    public void Dispose() => _dir.Dispose();
}
