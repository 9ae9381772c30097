using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Model.IO;
using E3.Model.Tokenization;

namespace E3.Cli.Commands;

/// <summary><c>e3 eval</c>: perplexity over a text file (tokenised with the model's tokenizer) or a token file.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var data = new Option<string>("--data") { Description = "Text file, or token ids as uint32 .bin or .npy", Required = true };
        var drop = CommonOptions.Drop();
        var window = new Option<int>("--window") { Description = "Tokens per evaluation window", DefaultValueFactory = _ => 256 };
        var maxTokens = new Option<long>("--max-tokens") { Description = "Stop after scoring this many tokens (0 = all)", DefaultValueFactory = _ => 0 };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("eval", "Perplexity of the model, optionally with layers skipped") { model, data, drop, window, maxTokens, device, threads, json };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string dir = p.GetValue(model)!, file = p.GetValue(data)!;
            using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
            using var m = DecoderModel.Load(dir, backend);
            int[] tokens = LoadTokens(file, dir, m.Config.VocabSize);
            var mask = LayerMask.ParseDropList(m.Config.NumLayers, p.GetValue(drop));
            long limit = p.GetValue(maxTokens) is > 0 and var l ? l : long.MaxValue;
            var r = Perplexity.Evaluate(m, tokens, mask, p.GetValue(window), limit);
            if (p.GetValue(json))
                CliRunner.WriteJson(new JsonObject
                {
                    ["perplexity"] = r.Perplexity, ["mean_nll"] = r.MeanNll, ["tokens"] = r.TokensScored, ["windows"] = r.Windows,
                    ["dropped"] = CliRunner.ToJsonArray(mask.Dropped), ["layers"] = m.Config.NumLayers,
                });
            else
                Console.Out.WriteLine($"perplexity {r.Perplexity:F4} (mean NLL {r.MeanNll:F4}) over {r.TokensScored} tokens in {r.Windows} windows; {mask}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    /// <summary>Token files are read as ids; anything else is text for the model's tokenizer.</summary>
    public static int[] LoadTokens(string file, string modelDir, int vocab)
    {
        if (!File.Exists(file)) throw new FileNotFoundException($"{file}: data file not found", file);
        string ext = Path.GetExtension(file).ToLowerInvariant();
        int[] tokens;
        if (ext is ".bin" or ".npy")
        {
            var tf = TokenFile.Read(file);
            tf.Validate(vocab);
            tokens = tf.Ids;
        }
        else
        {
            using var tok = TokenizerLoader.Load(modelDir, vocab);
            tokens = tok.Encode(File.ReadAllText(file));
        }
        if (tokens.Length < 2) throw new InvalidDataException($"{file}: holds {tokens.Length} tokens; at least 2 are needed");
        return tokens;
    }
}
