using System.CommandLine;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 demo</c>: a quick look at layer skipping without any files — the speedup benchmark on a built-in,
/// layer-dominated random Qwen3 with 25% of its layers skipped. (<c>./build.sh demo</c> runs the whole pipeline,
/// <c>e3 prune</c>, on the committed trained demo model instead.)
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var json = CommonOptions.Json();
        var cmd = new Command("demo", "Run the built-in CPU demo: full vs 25%-pruned random Qwen3, prefill and decode") { json };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            var spec = new RandomModelSpec
            {
                Architecture = Architecture.Qwen3, Layers = 32, Hidden = 512, Heads = 8, KvHeads = 2, HeadDim = 64,
                Intermediate = 1536, Vocab = 8192, Seed = 7,
            };
            string dir = Path.Combine(Path.GetTempPath(), $"e3-demo-{Guid.NewGuid():N}");
            try
            {
                bool quiet = p.GetValue(json);
                if (!quiet) Console.Error.WriteLine($"building a random Qwen3: {spec.Layers} layers, hidden {spec.Hidden}, MLP {spec.Intermediate}, vocab {spec.Vocab}");
                RandomModel.Write(spec, dir);
                using var backend = new E3.Backends.Cpu.CpuBackend();
                using var model = DecoderModel.Load(dir, backend);
                var mask = LayerMask.DropLast(spec.Layers, 0.25);
                var result = SpeedupBenchmark.Run(model, mask, batch: 1, prefill: 128, decode: 32, repeats: 3,
                    progress: quiet ? null : s => Console.Error.WriteLine($"  {s}"));
                if (quiet) CliRunner.WriteJson(E3.Pruning.Bench.BenchEnvironment.Wrap(E3.Pruning.Reports.ResultJson.SpeedupSchema, E3.Pruning.Reports.ResultJson.Speedup(result), gpu: null));
                else BenchCommands.Print(result);
                return ExitCodes.Ok;
            }
            finally
            {
                if (Directory.Exists(dir)) Directory.Delete(dir, true);
            }
        }));
        return cmd;
    }
}
