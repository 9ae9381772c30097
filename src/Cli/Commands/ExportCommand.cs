using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Pruning.Export;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary><c>e3 export</c>: a pruned Hugging Face checkpoint from a model folder and a mask.json.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var mask = new Option<string>("--mask") { Description = "mask.json from e3 search or e3 baseline", Required = true };
        var output = CommonOptions.OutputFolder(new Option<string>("--out") { Description = "Output folder (must not exist unless --force)", Required = true });
        var format = new Option<string>("--format") { Description = "Checkpoint format: hf (safetensors + config.json)", DefaultValueFactory = _ => "hf" };
        format.AcceptOnlyFromAmong("hf"); // the one format this build writes; --help lists no other
        var force = new Option<bool>("--force") { Description = "Replace an existing output folder" };
        var json = CommonOptions.Json();
        var cmd = new Command("export", "Write the model without the mask's dropped layers as a Hugging Face checkpoint (layers renumbered)")
        {
            model, mask, output, format, force, json,
        };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            var r = ConsoleProgress.Run("export tensors", "MB", report =>
                new CheckpointExporter { Progress = (done, total, bytes) => report(done, total, bytes / 1e6) }
                    .Export(p.GetValue(model)!, p.GetValue(mask)!, p.GetValue(output)!, p.GetValue(force)));
            if (p.GetValue(json))
                CliRunner.WriteJson(ResultJson.Export(r));
            else
                Console.Out.WriteLine($"exported {r.Kept.Count}/{r.SourceLayers} layers (kept [{string.Join(",", r.Kept)}]) to {r.OutputPath}: " +
                    $"{r.Tensors} tensors, {r.TensorBytes} bytes, {r.Files.Count} files{(r.Sharded ? ", sharded" : "")}");
            return ExitCodes.Ok;
        }));
        return cmd;
    }
}
