using System.CommandLine;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 demo</c>, what <c>./build.sh demo</c> runs: until the pruning pipeline lands, the speedup benchmark on a
/// built-in, layer-dominated Qwen3-shaped model with 25% of its layers skipped.
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
                if (quiet) CliRunner.WriteJson(BenchCommands.ToJson(result));
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
