using System.Text.Json;
using E3.Model;
using E3.Pruning.Bench;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.KernelBench;

/// <summary><c>e3 bench train</c>: its JSON on cpu and emu, the same step on both, its FLOP count and its errors.</summary>
public sealed class BenchTrainCliTests : IDisposable
{
    readonly TempDir _dir = new("e3-bench-train");

    string Model()
    {
        string folder = _dir["model"];
        if (!Directory.Exists(folder))
            RandomModel.Write(new RandomModelSpec { Layers = 4, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = 120, InitStd = 0.1f, Seed = 4 },
                folder);
        return folder;
    }

    [Fact]
    public void TheDistillationStepRunsOnCpuAndEmuWithTheSameLoss()
    {
        var results = new Dictionary<string, JsonElement>();
        foreach (var device in new[] { "cpu", "emu" })
        {
            var r = CliProcess.RunWithEnvironment(new Dictionary<string, string?> { ["E3_EMU_LIB"] = null },
                "bench", "train", "--model", Model(), "--drop", "2", "--seq", "16", "--batch", "2", "--repeats", "1", "--warmup", "1",
                "--device", device, "--teacher-dtype", "f32", "--json");
            Assert.True(r.ExitCode == 0, r.Stderr);
            results[device] = JsonDocument.Parse(r.Stdout).RootElement.Clone();
        }
        var cpu = results["cpu"];
        Assert.Equal("f32", results["emu"].GetProperty("teacher_dtype").GetString());
        Assert.Equal("kd", cpu.GetProperty("loss").GetString());
        Assert.Equal([2], cpu.GetProperty("dropped").EnumerateArray().Select(e => e.GetInt32()));
        double ms = cpu.GetProperty("step_ms").GetDouble();
        Assert.True(ms > 0);
        Assert.Equal(2 * 16 / (ms / 1e3), cpu.GetProperty("tokens_per_second").GetDouble(), 6);
        var config = ModelConfig.Load(Model());
        long flops = TrainingStepBenchmark.StepFlops(config, LayerMask.Dropping(4, [2]), StepLoss.Distillation, 2, 16);
        Assert.Equal(flops, cpu.GetProperty("flops").GetInt64());
        Assert.Equal(flops, results["emu"].GetProperty("flops").GetInt64());
        // The first step's loss is taken before anything changes: the backends differ by fp32 rounding of a KL formed
        // from terms of size log V (see GpuCliTests), ~1e-7 absolute.
        double a = cpu.GetProperty("first_loss").GetDouble(), b = results["emu"].GetProperty("first_loss").GetDouble();
        Assert.True(a > 0 && Math.Abs(a - b) <= 1e-6, $"first loss {a} on cpu, {b} on emu");

        // By default the emulator's teacher computes in bf16, as e3 distill's does.
        var bf16 = CliProcess.RunWithEnvironment(new Dictionary<string, string?> { ["E3_EMU_LIB"] = null },
            "bench", "train", "--model", Model(), "--drop", "2", "--seq", "16", "--batch", "2", "--repeats", "1", "--warmup", "1", "--device", "emu", "--json");
        Assert.True(bf16.ExitCode == 0, bf16.Stderr);
        var root = JsonDocument.Parse(bf16.Stdout).RootElement;
        Assert.Equal("bf16", root.GetProperty("teacher_dtype").GetString());
        Assert.NotEqual(b, root.GetProperty("first_loss").GetDouble());

        // On a GPU device the step reports the device memory it held at most beside the plan's figure; the cpu has none.
        // The plan leaves out the kernels' own scratch, about 3% here (see DistillationDeviceMemoryTests).
        Assert.Equal(JsonValueKind.Null, cpu.GetProperty("device_peak_bytes").ValueKind);
        long measured = root.GetProperty("device_peak_bytes").GetInt64(), planned = root.GetProperty("planned_device_peak_bytes").GetInt64();
        double error = Math.Abs(planned - measured) / (double)measured;
        Assert.True(error <= 0.05, $"planned {planned} B on the device, measured {measured} B ({error:P1} apart)");
    }

    /// <summary>
    /// --tf32 reaches the GEMMs: the first loss moves by the TF32 rounding of the step's products (operands to 11
    /// significant bits, ~1e-3 relative on each product, far less on a loss averaged over every token), and the cpu,
    /// which has no tensor cores, refuses it as a usage error.
    /// </summary>
    [Fact]
    public void Tf32ChangesTheLossByItsRoundingOnly()
    {
        JsonElement Step(params string[] extra)
        {
            var r = CliProcess.RunWithEnvironment(new Dictionary<string, string?> { ["E3_EMU_LIB"] = null },
                ["bench", "train", "--model", Model(), "--drop", "2", "--seq", "16", "--batch", "2", "--repeats", "1", "--warmup", "1",
                 "--device", "emu", "--teacher-dtype", "f32", "--json", .. extra]);
            Assert.True(r.ExitCode == 0, r.Stderr);
            return JsonDocument.Parse(r.Stdout).RootElement.Clone();
        }
        var fp32 = Step();
        var tf32 = Step("--tf32");
        Assert.False(fp32.GetProperty("tf32").GetBoolean());
        Assert.True(tf32.GetProperty("tf32").GetBoolean());
        double a = fp32.GetProperty("first_loss").GetDouble(), b = tf32.GetProperty("first_loss").GetDouble();
        Assert.NotEqual(a, b);
        Assert.True(Math.Abs(a - b) <= 1e-3 * Math.Abs(a), $"first loss {a} in fp32, {b} with TF32");

        var cpu = CliProcess.Run("bench", "train", "--model", Model(), "--prune", "0.25", "--tf32");
        Assert.Equal(2, cpu.ExitCode);
        Assert.Contains("--tf32: the cpu backend has no tensor cores", cpu.Stderr);
    }

    [Fact]
    public void TheFlopCountIsTheSumOfTheStepsMatrixProducts()
    {
        // An independent tally: every product of the step listed with its (m, n, k), 2mnk FLOPs each, the backward of a
        // trained projection twice its forward, and attention's causal pairs counted one by one.
        var c = ModelConfig.Load(Model());
        int batch = 3, t = 10, tokens = batch * t;
        int qw = c.NumHeads * c.HeadDim, kvw = c.NumKvHeads * c.HeadDim;
        (long M, long N, long K)[] projections =
            [(tokens, qw, c.HiddenSize), (tokens, kvw, c.HiddenSize), (tokens, kvw, c.HiddenSize), (tokens, c.HiddenSize, qw),
             (tokens, c.IntermediateSize, c.HiddenSize), (tokens, c.IntermediateSize, c.HiddenSize), (tokens, c.HiddenSize, c.IntermediateSize)];
        long layerForward = projections.Sum(p => 2 * p.M * p.N * p.K);
        long pairs = 0;
        for (int s = 0; s < batch; s++)
            for (int q = 0; q < t; q++) pairs += q + 1;
        long attentionForward = pairs * c.NumHeads * 2 * (2L * c.HeadDim); // QKᵀ and PV
        long attentionBackward = pairs * c.NumHeads * 2 * (7L * c.HeadDim) + 2L * tokens * c.NumHeads * c.HeadDim;
        long head = 2L * tokens * c.VocabSize * c.HiddenSize;
        long kept = 3, all = 4;
        long student = kept * (3 * layerForward + attentionForward + attentionBackward) + 3 * head;
        long teacher = all * (layerForward + attentionForward) + head;
        var mask = LayerMask.Dropping(4, [1]);
        Assert.Equal(student + teacher, TrainingStepBenchmark.StepFlops(c, mask, StepLoss.Distillation, batch, t));
        Assert.Equal(student, TrainingStepBenchmark.StepFlops(c, mask, StepLoss.CrossEntropy, batch, t));
    }

    [Fact]
    public void BadOptionsAreOneClearError()
    {
        var loss = CliProcess.Run("bench", "train", "--model", Model(), "--prune", "0.25", "--loss", "mse");
        Assert.Equal(2, loss.ExitCode);
        Assert.Contains("--loss: 'mse' is not one of kd, ce", loss.Stderr);
        var mask = CliProcess.Run("bench", "train", "--model", Model());
        Assert.Equal(2, mask.ExitCode);
        Assert.Contains("give --drop LIST or --prune RATIO", mask.Stderr);
        var seq = CliProcess.Run("bench", "train", "--model", Model(), "--prune", "0.25", "--seq", "1");
        Assert.Equal(2, seq.ExitCode);
        Assert.Contains("--seq: 1 must be at least 2", seq.Stderr);
    }

    public void Dispose() => _dir.Dispose();
}
