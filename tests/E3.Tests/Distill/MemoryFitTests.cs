using System.Text.Json.Nodes;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Distill;

/// <summary>
/// train and distill set their memory plan against the machine before loading anything: a job larger than the GPU is
/// refused naming what would shrink it (on emu the device's memory is the host's), and a host side larger than the
/// process may use gets a warning. The models here are config.json alone, Qwen3-8B's shape: the check comes before any
/// weight is read.
/// </summary>
public sealed class MemoryFitTests : IDisposable
{
    readonly TempDir _dir = new("e3-memory-fit");
    static readonly Dictionary<string, string?> Emulator = new() { ["E3_EMU_LIB"] = null };

    string ConfigOnly(string name)
    {
        Directory.CreateDirectory(_dir[name]);
        File.WriteAllText(Path.Combine(_dir[name], "config.json"), new JsonObject
        {
            ["model_type"] = "qwen3", ["vocab_size"] = 151936, ["hidden_size"] = 4096, ["intermediate_size"] = 12288, ["num_hidden_layers"] = 36,
            ["num_attention_heads"] = 32, ["num_key_value_heads"] = 8, ["head_dim"] = 128, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 1000000.0,
            ["tie_word_embeddings"] = false, ["max_position_embeddings"] = 40960, ["torch_dtype"] = "bfloat16",
        }.ToJsonString());
        return _dir[name];
    }

    string Data()
    {
        File.WriteAllText(_dir["data.txt"], "tokens");
        return _dir["data.txt"];
    }

    [Fact]
    public void ADistillationLargerThanTheDeviceIsRefusedBeforeLoading()
    {
        // Without checkpointing, 8 x 4096 tokens of an 8B model save ~320 GB of activations: no machine running CI has that.
        var r = CliProcess.RunWithEnvironment(Emulator, "distill", "--teacher", ConfigOnly("teacher"), "--student", ConfigOnly("student"),
            "--data", Data(), "--seq", "4096", "--batch", "8", "--device", "emu", "--out", _dir["out"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("e3: error: distill needs", r.Stderr);
        Assert.Contains("GiB of device memory by its plan, more than the", r.Stderr);
        Assert.Contains("add --activation-checkpointing", r.Stderr);
        Assert.DoesNotContain("safetensors", r.Stderr); // refused before the (absent) weights were looked for
        Assert.False(Directory.Exists(_dir["out"]));
    }

    [Fact]
    public void ASearchLargerThanTheDeviceIsRefusedBeforeLoading()
    {
        var r = CliProcess.RunWithEnvironment(Emulator, "search", "--model", ConfigOnly("model"), "--data", Data(), "--prune", "0.25",
            "--seq", "4096", "--batch", "8", "--device", "emu", "--out", _dir["mask.json"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("e3: error: search needs", r.Stderr);
        Assert.DoesNotContain("freeze", r.Stderr); // the search trains no weight
        Assert.False(File.Exists(_dir["mask.json"]));
    }

    [Fact]
    public void TrainingLargerThanTheDeviceIsRefusedAndTheHostGetsAWarning()
    {
        var device = CliProcess.RunWithEnvironment(Emulator, "train", "--model", ConfigOnly("model"), "--data", Data(), "--seq", "4096", "--batch", "8",
            "--device", "emu", "--out", _dir["out"]);
        Assert.Equal(1, device.ExitCode);
        Assert.Contains("e3: error: train needs", device.Stderr);

        // On the cpu everything is host memory: the same job only warns, then fails on the missing weights.
        var host = CliProcess.Run("train", "--model", ConfigOnly("model"), "--data", Data(), "--seq", "4096", "--batch", "8", "--out", _dir["out"]);
        Assert.Equal(1, host.ExitCode);
        Assert.Contains("e3: warning: train plans", host.Stderr);
        Assert.Contains("GiB of host memory, more than the", host.Stderr);
        Assert.Contains("safetensors", host.Stderr);
    }

    [Fact]
    public void InsideAPruneRunTheAdviceSaysToLowerTheShapeInANewRun()
    {
        // e3 prune's resume keeps --seq and --batch, so its advice cannot be "lower them" alone. On the cpu the host side
        // of this plan is over the limit, which warns with the advice.
        string folder = ConfigOnly("model");
        var config = E3.Model.ModelConfig.Load(folder);
        using var cpu = new E3.Backends.Cpu.CpuBackend(1);
        var pruneAdvice = new List<string>();
        E3.Pruning.Distill.MemoryFit.CheckSearch(folder, config, 4096, 8, checkpointing: false, liveTeacher: true, cpu, pruneAdvice.Add, shapeFixed: true);
        Assert.Contains("lower --seq or --batch in a new run (another --out", Assert.Single(pruneAdvice));
        var searchAdvice = new List<string>();
        E3.Pruning.Distill.MemoryFit.CheckSearch(folder, config, 4096, 8, checkpointing: false, liveTeacher: true, cpu, searchAdvice.Add);
        Assert.DoesNotContain("new run", Assert.Single(searchAdvice));
    }

    public void Dispose() => _dir.Dispose();
}
