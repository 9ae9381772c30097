using System.CommandLine;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Tokenization;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary><c>e3 generate</c>: continuation of a prompt with the KV cache, greedy or sampled.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = new Option<string>("--prompt") { Description = "Prompt text", Required = true };
        var drop = CommonOptions.Drop();
        var maxNew = new Option<int>("--max-new") { Description = "Tokens to generate", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "Sample at this softmax temperature (> 0); 0 takes the most likely token (greedy)", DefaultValueFactory = _ => 0f };
        var topK = new Option<int>("--top-k") { Description = $"Sample from the K most likely tokens only (1..{SamplingOptions.MaxTopK}; 0: no limit)", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "Sample from the smallest set of most likely tokens holding this probability, in (0, 1]", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong?>("--seed") { Description = "Seeds the draws (default 0): the same seed gives the same text" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("generate", "Text generation (greedy, or sampled with --temperature), optionally with layers skipped")
        {
            model, prompt, drop, maxNew, temperature, topK, topP, seed, device, threads, json,
        };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            var sampling = Sampling(p.GetValue(temperature), p.GetValue(topK), p.GetValue(topP), p.GetValue(seed));
            string dir = p.GetValue(model)!;
            using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
            using var m = DecoderModel.Load(dir, backend);
            using var tok = TokenizerLoader.Load(dir, m.Config.VocabSize);
            var mask = LayerMask.ParseDropList(m.Config.NumLayers, p.GetValue(drop));
            int[] ids = tok.Encode(p.GetValue(prompt)!);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            int[] generated = Generator.Generate(m, ids, p.GetValue(maxNew), sampling, mask, tok.EosTokenId);
            double seconds = sw.Elapsed.TotalSeconds;
            string text = Decode(tok, generated);
            if (p.GetValue(json))
            {
                CliRunner.WriteJson(new System.Text.Json.Nodes.JsonObject
                {
                    ["prompt_tokens"] = ResultJson.Array(ids),
                    ["generated_tokens"] = ResultJson.Array(generated),
                    ["text"] = text,
                    ["dropped"] = ResultJson.Array(mask.Dropped),
                    ["sampling"] = sampling is null ? null : new System.Text.Json.Nodes.JsonObject
                    {
                        ["temperature"] = sampling.Temperature, ["top_k"] = sampling.TopK, ["top_p"] = sampling.TopP, ["seed"] = sampling.Seed,
                    },
                    ["seconds"] = seconds,
                });
            }
            else
            {
                Console.Out.WriteLine(p.GetValue(prompt) + text);
                Console.Error.WriteLine($"{generated.Length} tokens in {seconds:F2} s ({mask})");
            }
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>
    /// The options as sampling settings, or null for greedy decoding (--temperature 0); an option out of range, or a
    /// sampling option without a temperature, is a usage error naming it.
    /// </summary>
    static SamplingOptions? Sampling(float temperature, int topK, float topP, ulong? seed)
    {
        if (!(temperature == 0 || temperature >= SamplingOptions.MinTemperature) || !float.IsFinite(temperature))
            throw new UsageException($"--temperature: {temperature} must be 0 (greedy) or finite and >= {SamplingOptions.MinTemperature}");
        if (topK < 0 || topK > SamplingOptions.MaxTopK) throw new UsageException($"--top-k: {topK} must lie in 0..{SamplingOptions.MaxTopK}");
        if (!(topP > 0 && topP <= 1)) throw new UsageException($"--top-p: {topP} must lie in (0, 1]");
        if (temperature == 0)
        {
            if (topK != 0 || topP != 1 || seed != null) throw new UsageException("--top-k, --top-p and --seed sample: give --temperature above 0 with them");
            return null;
        }
        return new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, Seed = seed ?? 0 };
    }

    /// <summary>
    /// The text of <paramref name="ids"/>. A model's vocabulary is often wider than its tokenizer's (padding rows, as in
    /// Qwen3's 151,936 against 151,669 tokens), and a model can emit an id no token has: it is written as &lt;|id:N|&gt;
    /// between the decoded runs instead of failing after the whole generation.
    /// </summary>
    internal static string Decode(E3.Model.Tokenization.ITokenizer tok, ReadOnlySpan<int> ids)
    {
        var text = new System.Text.StringBuilder();
        int start = 0;
        for (int i = 0; i <= ids.Length; i++)
        {
            if (i < ids.Length && (uint)ids[i] < (uint)tok.VocabSize) continue;
            if (i > start) text.Append(tok.Decode(ids[start..i]));
            if (i < ids.Length) text.Append($"<|id:{ids[i]}|>");
            start = i + 1;
        }
        return text.ToString();
    }
}
