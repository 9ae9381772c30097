using System.CommandLine;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Tokenization;

namespace E3.Cli.Commands;

/// <summary><c>e3 generate</c>: greedy continuation of a prompt with the KV cache.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = new Option<string>("--prompt") { Description = "Prompt text", Required = true };
        var drop = CommonOptions.Drop();
        var maxNew = new Option<int>("--max-new") { Description = "Tokens to generate", DefaultValueFactory = _ => 32 };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("generate", "Greedy text generation, optionally with layers skipped") { model, prompt, drop, maxNew, device, threads, json };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string dir = p.GetValue(model)!;
            using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
            using var m = DecoderModel.Load(dir, backend);
            using var tok = TokenizerLoader.Load(dir, m.Config.VocabSize);
            var mask = LayerMask.ParseDropList(m.Config.NumLayers, p.GetValue(drop));
            int[] ids = tok.Encode(p.GetValue(prompt)!);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            int[] generated = GreedyGenerator.Generate(m, ids, p.GetValue(maxNew), mask, tok.EosTokenId);
            double seconds = sw.Elapsed.TotalSeconds;
            string text = Decode(tok, generated);
            if (p.GetValue(json))
            {
                CliRunner.WriteJson(new System.Text.Json.Nodes.JsonObject
                {
                    ["prompt_tokens"] = CliRunner.ToJsonArray(ids),
                    ["generated_tokens"] = CliRunner.ToJsonArray(generated),
                    ["text"] = text,
                    ["dropped"] = CliRunner.ToJsonArray(mask.Dropped),
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
