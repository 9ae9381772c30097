using System.CommandLine;
using System.Globalization;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;

namespace E3.Cli.Commands;

/// <summary><c>e3 forward</c>: logits of one token sequence as a float32 .npy [T, V], for comparison with any framework.</summary>
internal static class ForwardCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var tokens = new Option<string>("--tokens") { Description = "Comma-separated token ids, e.g. 1,2,3", Required = true };
        var drop = CommonOptions.Drop();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var precision = CommonOptions.Precision();
        var output = CommonOptions.OutputFile(new Option<string>("--out") { Description = "Output .npy file (float32 [T, V])", Required = true });
        var cmd = new Command("forward", "Run the forward pass and write the logits as a NumPy .npy file") { model, tokens, drop, device, threads, precision, output };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            int[] ids = ParseTokens(p.GetValue(tokens)!);
            using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
            using var m = DecoderModel.Load(p.GetValue(model)!, backend, CommonOptions.ParsePrecision(p.GetValue(precision)!));
            var mask = LayerMask.ParseDropList(m.Config.NumLayers, p.GetValue(drop));
            m.ValidateTokens(ids, "--tokens");
            float[] logits = m.Forward(ids, mask);
            NpyFile.WriteFloat32(p.GetValue(output)!, logits, [ids.Length, m.Config.VocabSize]);
            Console.Error.WriteLine($"wrote logits [{ids.Length}, {m.Config.VocabSize}] to {p.GetValue(output)} ({mask})");
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    public static int[] ParseTokens(string list)
    {
        if (string.IsNullOrWhiteSpace(list)) throw new FormatException("--tokens: no token ids given");
        // Every comma separates one id: "1,,2" is a typo to report, not two tokens.
        var parts = list.Split(',', StringSplitOptions.TrimEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
                throw new FormatException($"--tokens: '{parts[i]}' (position {i}) is not a non-negative token id");
        return ids;
    }
}
