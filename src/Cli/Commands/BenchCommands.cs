using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.Evaluation;
using E3.Pruning.Bench;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary>
/// <c>e3 bench speedup</c>: full vs layer-skipped model, side by side in one process; <c>e3 bench kernels</c> is
/// <see cref="BenchKernelsCommand"/>, <c>e3 bench train</c> <see cref="BenchTrainCommand"/>.
/// </summary>
internal static class BenchCommands
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks");
        bench.Subcommands.Add(Speedup());
        bench.Subcommands.Add(BenchKernelsCommand.Create());
        bench.Subcommands.Add(BenchTrainCommand.Create());
        return bench;
    }

    static Command Speedup()
    {
        var model = CommonOptions.Model(required: false);
        var arch = new Option<string?>("--arch") { Description = "Benchmark a random model of this architecture instead of --model (qwen3, llama, qwen2)" };
        var shape = new ModelShapeOptions(d => "With --arch: " + d, layers: 32, hidden: 1024, heads: 16, kvHeads: 4,
            intermediate: 3072, vocab: 8192, headDim: false);
        var dtype = new Option<string>("--dtype") { Description = "With --arch: float32 or bfloat16 weights", DefaultValueFactory = _ => "float32" };
        var drop = CommonOptions.Drop();
        var prune = CommonOptions.PruneLast();
        var prefill = CommonOptions.AtLeast(new Option<int>("--prefill") { Description = "Prompt tokens per sequence", DefaultValueFactory = _ => 512 }, 1);
        var decode = CommonOptions.AtLeast(new Option<int>("--decode") { Description = "Generated tokens per sequence", DefaultValueFactory = _ => 128 }, 0);
        var batch = CommonOptions.AtLeast(new Option<int>("--batch") { Description = "Sequences", DefaultValueFactory = _ => 1 }, 1);
        var repeats = CommonOptions.AtLeast(new Option<int>("--repeats") { Description = "Timed repeats (median reported)", DefaultValueFactory = _ => 5 }, 1);
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("speedup", "Prefill and decode tokens/s of the full and the pruned model, and their ratio")
            { model, arch };
        foreach (var option in shape.All) cmd.Options.Add(option);
        foreach (var option in new Option[] { dtype, drop, prune, prefill, decode, batch, repeats, device, threads, json }) cmd.Options.Add(option);
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            string? dir = p.GetValue(model);
            string? a = p.GetValue(arch);
            if ((dir == null) == (a == null)) throw new UsageException("give exactly one of --model DIR or --arch NAME");
            string? temp = null;
            try
            {
                if (a != null)
                {
                    temp = Path.Combine(Path.GetTempPath(), $"e3-bench-{Guid.NewGuid():N}");
                    RandomModel.Write(shape.Spec(p, CommonOptions.ParseArchitecture(a)) with { Dtype = p.GetValue(dtype)!, Seed = 1 }, temp);
                    dir = temp;
                }
                using var backend = CliRunner.CreateBackend(p.GetValue(device)!, p.GetValue(threads));
                using var m = DecoderModel.Load(dir!, backend);
                int L = m.Config.NumLayers;
                var mask = CommonOptions.DropOrPrune(p.GetValue(drop), p.GetValue(prune), L);
                // Checked before the warm-up, not after the first timed repeat: a speedup needs a pruned model to time.
                if (mask.KeptCount == 0) throw new UsageException($"--drop/--prune: the mask drops all {L} layers; keep at least one");
                bool quiet = p.GetValue(json);
                var result = SpeedupBenchmark.Run(m, mask, p.GetValue(batch), p.GetValue(prefill), p.GetValue(decode), p.GetValue(repeats),
                    progress: quiet ? null : s => Console.Error.WriteLine($"  {s}"));
                if (quiet) CliRunner.WriteJson(BenchEnvironment.Wrap(ResultJson.SpeedupSchema, ResultJson.Speedup(result), BenchEnvironment.GpuOf(backend)));
                else Print(result);
                return ExitCodes.Ok;
            }
            finally
            {
                if (temp != null && Directory.Exists(temp)) Directory.Delete(temp, true);
            }
        }));
        return cmd;
    }

    public static void Print(SpeedupResult r)
    {
        double ideal = r.Layers / (double)(r.Layers - r.Dropped.Length);
        Console.Out.WriteLine($"layers {r.Layers}, dropped {r.Dropped.Length} [{string.Join(",", r.Dropped)}], batch {r.Batch}, device {r.Device}, median of {r.Repeats}");
        Console.Out.WriteLine($"{"phase",-8} {"full tok/s",12} {"pruned tok/s",13} {"speedup",8} {"roofline",8} {"ideal",7}  paired ratios");
        Console.Out.WriteLine($"{"prefill",-8} {r.Prefill.FullTps,12:F1} {r.Prefill.PrunedTps,13:F1} {r.Prefill.Speedup,7:F3}x {r.Roofline.Prefill,7:F3}x {ideal,6:F3}x  {Range(r.Prefill)}");
        if (r.Roofline.Decode is { } decodeRoofline)
            Console.Out.WriteLine($"{"decode",-8} {r.Decode.FullTps,12:F1} {r.Decode.PrunedTps,13:F1} {r.Decode.Speedup,7:F3}x {decodeRoofline,7:F3}x {ideal,6:F3}x  {Range(r.Decode)}");
        Console.Out.WriteLine("ideal: layers / kept layers; roofline: the same with the work no mask removes (LM head, KV cache) counted, prefill by FLOPs and decode by bytes");
    }

    // With 6 or more repeats, the 95% interval of the median paired ratio; below that, no interval reaches 95%.
    static string Range(PhaseSpeed s) =>
        s.PairedInterval is { } ci ? $"{ci.Low:F3}-{ci.High:F3}x ({100 * ci.Coverage:F1}% interval of the median)"
        : s.PairedSpeedups.Count == 0 ? "" : $"{s.PairedSpeedups.Min():F3}-{s.PairedSpeedups.Max():F3}x (range)";
}
