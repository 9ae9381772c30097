using E3.Backends;
using E3.Interop.Emulator;
using E3.Model;
using E3.Pruning.Distillation;
using E3.Pruning.Distill;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Distill;

/// <summary>
/// The library's distillation entry refuses, before loading anything, a request it cannot run: the error names the
/// field and the value, and nothing is written. (What a run computes is covered through <c>e3 distill</c>, which runs
/// this same entry, and by the README's library example.)
/// </summary>
public sealed class DistillerTests
{
    static DistillationRequest Request(string teacher, string output) => new()
    {
        Teacher = teacher, Data = "tokens.bin", Output = output,
        Settings = new TrainingSettings { Tokens = 8, Sequence = 4, Batch = 1, Warmup = 0 },
    };

    [Fact]
    public void ARequestThatCannotRunIsRefusedNamingTheFieldAndNothingIsWritten()
    {
        using var dir = new TempDir();
        string model = dir["model"];
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 24, Vocab = 32, Seed = 1 }, model);
        using var cpu = ComputeDevice.Open("cpu", new ComputeDeviceOptions { Threads = 1 });
        string output = dir["out"];

        var neither = Assert.Throws<ArgumentException>(() => Distiller.Run(cpu, Request(model, output)));
        Assert.Contains("exactly one of Student and Mask", neither.Message);
        var both = Assert.Throws<ArgumentException>(() => Distiller.Run(cpu, Request(model, output) with { Student = model, Mask = dir["mask.json"] }));
        Assert.Contains("exactly one of Student and Mask", both.Message);
        var cacheAndDtype = Assert.Throws<ArgumentException>(() => Distiller.Run(cpu,
            Request(model, output) with { Student = model, TeacherCache = dir["c.e3tc"], TeacherActivations = DType.F32 }));
        Assert.Contains("TeacherActivations F32", cacheAndDtype.Message);
        var bf16OnCpu = Assert.Throws<ArgumentException>(() => Distiller.Run(cpu, Request(model, output) with { Student = model, TeacherActivations = DType.BF16 }));
        Assert.Contains("bf16 teacher needs a cuda or emu device", bf16OnCpu.Message);
        var badSettings = Assert.Throws<ArgumentException>(() => Distiller.Run(cpu,
            Request(model, output) with { Student = model, Settings = new TrainingSettings { Batch = 0 } }));
        Assert.Contains("--batch: 0", badSettings.Message);

        // The test process binds the test emulator library (a superset of the product one) before anything asks for "emu".
        EmuLibrary.Load(EmuLibrary.TestFileName);
        using var inference = ComputeDevice.Open("emu");
        var wrongDevice = Assert.Throws<ArgumentException>(() => Distiller.Run(inference, Request(model, output) with { Student = model }));
        Assert.Contains("opened for inference", wrongDevice.Message);
        Assert.False(Directory.Exists(output));
    }

    /// <summary>A 2-layer random model and a .bin of <paramref name="tokens"/> ids stepping by <paramref name="stride"/> through its 32-token vocabulary.</summary>
    static (string Model, string Data) TinyModelAndTokens(TempDir dir, int tokens, int stride)
    {
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 24, Vocab = 32, Seed = 1 }, dir["model"]);
        File.WriteAllBytes(dir["data.bin"], Enumerable.Range(0, tokens).SelectMany(i => BitConverter.GetBytes((uint)(i * stride % 32))).ToArray());
        return (dir["model"], dir["data.bin"]);
    }

    [Fact]
    public void AKdOptionTheCliNeverSetsIsStillPartOfTheRunSoAResumeWithAnotherIsRefused()
    {
        using var dir = new TempDir();
        var (model, data) = TinyModelAndTokens(dir, tokens: 64, stride: 5);
        using var cpu = ComputeDevice.Open("cpu", new ComputeDeviceOptions { Threads = 1 });
        var request = Request(model, dir["out"]) with
        {
            Student = model, Data = data, CheckpointFolder = dir["ckpt"],
            Settings = new TrainingSettings { Tokens = 16, Sequence = 4, Batch = 2, Warmup = 0, CheckpointEvery = 1 },
        };
        var first = Distiller.Run(cpu, request);
        Assert.Equal(2, first.Result.Steps);

        var other = request with { Output = dir["out2"], Resume = true, Kd = new KdOptions { SoftmaxBeta = 3.5 } };
        var refused = Assert.Throws<TrainingCheckpointException>(() => Distiller.Run(cpu, other));
        Assert.Contains("fingerprint", refused.Message);
        Assert.False(Directory.Exists(dir["out2"]));
        // The same options resume (nothing left to run), so the refusal above was the option's doing.
        Assert.True(Distiller.Run(cpu, request with { Output = dir["out3"], Resume = true }).Resumed);
    }

    [Fact]
    public void ACancelledRunSavesTheStepsSinceItsLastCheckpointAndResumesBitIdentically()
    {
        using var dir = new TempDir();
        var (model, data) = TinyModelAndTokens(dir, tokens: 256, stride: 7);
        using var cpu = ComputeDevice.Open("cpu", new ComputeDeviceOptions { Threads = 1 });
        // 12 steps; no checkpoint but the last one, so only the cancellation can save step 5.
        var request = Request(model, dir["whole"]) with
        {
            Student = model, Data = data, CheckpointFolder = dir["ckpt-whole"],
            Settings = new TrainingSettings { Tokens = 96, Sequence = 4, Batch = 2, Warmup = 2, CheckpointEvery = 0 },
        };
        var whole = Distiller.Run(cpu, request);
        Assert.Equal(12, whole.Result.Steps);

        using var cancel = new CancellationTokenSource();
        var stopped = request with { Output = dir["resumed"], CheckpointFolder = dir["ckpt"] };
        Assert.ThrowsAny<OperationCanceledException>(() => Distiller.Run(cpu, stopped, p => { if (p.Step == 5) cancel.Cancel(); }, cancel.Token));
        Assert.False(Directory.Exists(dir["resumed"]));
        Assert.True(new TrainingCheckpoint(dir["ckpt"]).Exists);

        var resumed = Distiller.Run(cpu, stopped with { Resume = true });
        Assert.True(resumed.Resumed);
        Assert.Equal(5, resumed.Result.StartStep);
        Assert.Equal(whole.Result.LossHistory, resumed.Result.LossHistory);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir["whole"], "model.safetensors")), File.ReadAllBytes(Path.Combine(dir["resumed"], "model.safetensors")));
    }
}
