using System.CommandLine;
using System.Text.Json.Nodes;
using E3.Model.Decoder;
using E3.Pruning.Bench;
using E3.Pruning.Reports;

namespace E3.Cli.Commands;

/// <summary><c>e3 bench train</c>: one training micro-step of a pruned student (<see cref="TrainingStepBenchmark"/>).</summary>
internal static class BenchTrainCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var drop = CommonOptions.Drop();
        var prune = CommonOptions.PruneLast();
        var loss = new Option<string>("--loss") { Description = "kd: distillation from the unpruned model (its forward included); ce: next-token cross-entropy", DefaultValueFactory = _ => "kd" };
        var seq = new Option<int>("--seq") { Description = "Tokens per sequence (T)", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch") { Description = "Sequences per micro-step (B)", DefaultValueFactory = _ => 1 };
        var repeats = new Option<int>("--repeats") { Description = "Timed steps (median reported)", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed steps first (at least 1)", DefaultValueFactory = _ => 2 };
        var teacherDType = CommonOptions.TeacherDType();
        var device = CommonOptions.Device();
        var tf32 = CommonOptions.Tf32();
        var threads = CommonOptions.Threads();
        var json = CommonOptions.Json();
        var cmd = new Command("train", "Time one training micro-step (forward, loss, backward; not the optimizer) of the pruned model: tokens/s and TFLOP/s")
            { model, drop, prune, loss, teacherDType, seq, batch, repeats, warmup, device, tf32, threads, json };
        cmd.SetAction(p => CliRunner.Guard(() =>
        {
            var stepLoss = p.GetValue(loss) switch
            {
                "kd" => StepLoss.Distillation,
                "ce" => StepLoss.CrossEntropy,
                var other => throw new UsageException($"--loss: '{other}' is not one of kd, ce"),
            };
            if (p.GetValue(seq) < 2) throw new UsageException($"--seq: {p.GetValue(seq)} must be at least 2");
            if (p.GetValue(batch) < 1) throw new UsageException($"--batch: {p.GetValue(batch)} must be at least 1");
            if (p.GetValue(repeats) < 1) throw new UsageException($"--repeats: {p.GetValue(repeats)} must be at least 1");
            if (p.GetValue(warmup) < 1) throw new UsageException($"--warmup: {p.GetValue(warmup)} must be at least 1");
            string dir = p.GetValue(model)!;
            using var backend = CliRunner.CreateTrainingBackend(p.GetValue(device)!, p.GetValue(threads), p.GetValue(tf32));
            using var student = DecoderModel.Load(dir, backend);
            int layers = student.Config.NumLayers;
            var mask = CommonOptions.DropOrPrune(p.GetValue(drop), p.GetValue(prune), layers);
            var (teacherBackend, teacherPrecision) = stepLoss == StepLoss.Distillation ? CliRunner.CreateTeacherBackend(backend, p.GetValue(teacherDType)) : (null, default);
            using var ownTeacherBackend = teacherBackend;
            using var teacher = stepLoss == StepLoss.Distillation ? DecoderModel.Load(dir, teacherBackend ?? backend, teacherPrecision) : null;
            var result = TrainingStepBenchmark.Run(student, teacher, mask, stepLoss, p.GetValue(batch), p.GetValue(seq), p.GetValue(repeats), p.GetValue(warmup));
            string? teacherComputes = teacher == null ? null : teacherBackend != null ? "bf16" : "f32";
            if (p.GetValue(json))
                CliRunner.WriteJson(BenchEnvironment.Wrap("e3.bench.train/1", ToJson(result, teacherComputes, p.GetValue(tf32)), BenchEnvironment.GpuOf(backend)));
            else
                Console.Out.WriteLine($"{result.Loss} step, {result.Layers} layers (dropped [{string.Join(",", result.Dropped)}]), batch {result.Batch} x {result.Sequence}, " +
                    $"device {result.Device}: {result.MedianSeconds * 1e3:F2} ms (median of {result.Repeats}), {result.TokensPerSecond:F1} tokens/s, " +
                    $"{result.Teraflops:F3} TFLOP/s" + (result.DevicePeakBytes is { } peak
                        ? $", device peak {peak / (double)(1L << 30):F2} GiB (planned {result.Plan.DevicePeak / (double)(1L << 30):F2} GiB)" : ""));
            return ExitCodes.Ok;
        }));
        return cmd;
    }

    static JsonObject ToJson(TrainingStepResult r, string? teacherDType, bool tf32) => new()
    {
        ["device"] = r.Device,
        ["tf32"] = tf32,
        ["loss"] = r.Loss == StepLoss.Distillation ? "kd" : "ce",
        ["teacher_dtype"] = teacherDType,
        ["layers"] = r.Layers,
        ["dropped"] = ResultJson.Array(r.Dropped),
        ["batch"] = r.Batch,
        ["seq"] = r.Sequence,
        ["repeats"] = r.Repeats,
        ["step_ms"] = r.MedianSeconds * 1e3,
        ["tokens_per_second"] = r.TokensPerSecond,
        ["flops"] = r.Flops,
        ["tflops"] = r.Teraflops,
        ["first_loss"] = r.FirstLoss,
        // What e3 held on the device at most (weights included; not the driver's or cuBLAS's own), beside the plan's figure.
        ["device_peak_bytes"] = r.DevicePeakBytes,
        ["planned_device_peak_bytes"] = r.DevicePeakBytes == null ? null : r.Plan.DevicePeak,
        ["excludes"] = "the optimizer step (AdamW on the host, once per optimizer step)",
    };
}
