using E3.Backends.Cpu;
using E3.Interop.Native;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.GpuBackend;

/// <summary><c>--device emu</c> through the real e3 executable, and the errors for a missing emulator or GPU.</summary>
public sealed class GpuCliTests : IDisposable
{
    readonly TempDir _dir = new("e3-gpucli");

    [Fact]
    public void ForwardOnTheEmulatorMatchesTheCpuWithinBf16()
    {
        string model = _dir["m"];
        RandomModel.Write(new RandomModelSpec { Layers = 2, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = 40, InitStd = 0.15f, Seed = 9 }, model);
        string npy = _dir["logits.npy"];
        var r = Run(null, "forward", "--model", model, "--tokens", "1,2,3,39", "--drop", "1", "--device", "emu", "--out", npy);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var got = NpyFile.Read<float>(npy);
        Assert.Equal(new long[] { 4, 40 }, got.Shape);
        using var cpu = new CpuBackend();
        using var m = DecoderModel.Load(model, cpu);
        var want = m.Forward([1, 2, 3, 39], LayerMask.Dropping(2, [1]));
        // The CLI runs emu with bf16 activations (as on a GPU) and fp32 weights: every activation is rounded to 8
        // significant bits at each of the ~10 steps of a layer, so logits of order 1 differ from the fp32 forward by a
        // few 2^-8; 0.1 absolute bounds that with room, while a wrong layer or mask would move them by far more.
        Approx.Close(want, got.Data, 0, 0.1, "emu logits vs cpu");
        Assert.Contains(want.Zip(got.Data), p => Math.Abs(p.First - p.Second) > 0); // bf16 really was used
    }

    [Fact]
    public void TrainDistillAndSearchRunOnTheEmulatorAsOnTheCpu()
    {
        // They run a backward pass, which computes in fp32, so the GPU backend they get keeps fp32 activations (the
        // inference commands' bf16 one refuses the backward). Distillation there runs its loss on the device.
        string model = _dir["train-model"], data = _dir["train.txt"];
        E3.Tests.Distill.DistillTestModels.Write(model, layers: 4, seed: 11);
        E3.Tests.Distill.DistillTestModels.WriteText(data, 120);
        var mask = _dir["mask.json"];
        Assert.Equal(0, Run(null, "baseline", "--method", "last", "--model", model, "--prune", "0.25", "--out", mask).ExitCode);
        string[] steps = ["--data", data, "--tokens", "256", "--seq", "32", "--batch", "2", "--json"];
        var commands = new Dictionary<string, string[]>
        {
            ["train"] = ["train", "--model", model, "--warmup", "2", .. steps],
            // The teacher's fp32 forward, so that only the backends' rounding separates the two.
            ["distill"] = ["distill", "--teacher", model, "--mask", mask, "--warmup", "2", "--teacher-dtype", "f32", .. steps],
            ["search"] = ["search", "--model", model, "--prune", "0.25", "--samples", "2", .. steps],
        };
        foreach (var (name, args) in commands)
        {
            var result = new Dictionary<string, System.Text.Json.Nodes.JsonNode>();
            foreach (var device in new[] { "cpu", "emu" })
            {
                var r = Run(null, [.. args, "--device", device, "--out", _dir[$"{name}-{device}" + (name == "search" ? ".json" : "")]]);
                Assert.True(r.ExitCode == 0, $"{name} --device {device}: {r.Stderr}");
                result[device] = System.Text.Json.Nodes.JsonNode.Parse(r.Stdout)!;
            }
            if (name == "search")
            {
                // Eight steps move α far more than rounding does: the learned masks must agree.
                Assert.Equal(result["cpu"]["kept"]!.ToJsonString(), result["emu"]["kept"]!.ToJsonString());
                continue;
            }
            // The first step's loss is taken before any update, so the backends differ by fp32 rounding only. The
            // distillation loss is a KL of ~3e-3 formed as a difference of terms of size log V ≈ 5.6, so its error is
            // absolute: ~ε·log V per row, 1e-6 with room; a wrong row, weight or head term moves it by O(KL).
            double cpu = (double)result["cpu"]["loss_history"]![0]![1]!, emu = (double)result["emu"]["loss_history"]![0]![1]!;
            Assert.True(Math.Abs(cpu - emu) <= 1e-6 * Math.Max(1, Math.Abs(cpu)), $"{name}: first loss {emu} on emu vs {cpu} on cpu");
        }
    }

    [Fact]
    public void DistillOnTheEmulatorRunsItsTeacherInBf16ByDefault()
    {
        string model = _dir["bf16-teacher-model"], data = _dir["bf16-teacher.txt"], mask = _dir["bf16-teacher-mask.json"];
        E3.Tests.Distill.DistillTestModels.Write(model, layers: 4, seed: 11);
        E3.Tests.Distill.DistillTestModels.WriteText(data, 120);
        Assert.Equal(0, Run(null, "baseline", "--method", "last", "--model", model, "--prune", "0.25", "--out", mask).ExitCode);
        string[] args = ["distill", "--teacher", model, "--mask", mask, "--data", data, "--tokens", "64", "--seq", "32", "--batch", "2",
            "--warmup", "1", "--device", "emu", "--json"];
        double FirstLoss(string name, params string[] extra)
        {
            var r = Run(null, [.. args, .. extra, "--out", _dir[name]]);
            Assert.True(r.ExitCode == 0, $"{name}: {r.Stderr}");
            return (double)System.Text.Json.Nodes.JsonNode.Parse(r.Stdout)!["loss_history"]![0]![1]!;
        }
        double byDefault = FirstLoss("distill-default"), bf16 = FirstLoss("distill-bf16", "--teacher-dtype", "bf16");
        double fp32 = FirstLoss("distill-f32", "--teacher-dtype", "f32");
        Assert.Equal(bf16, byDefault);
        Assert.NotEqual(fp32, bf16); // the teacher's logits really were bf16
        // Its logits move by a few bf16 steps (|Δz| ≲ 0.05 here, the forward test above bounds them by 0.1), and to first
        // order the KL moves by at most |Δz|∞ · E_p|r − E_p r| ≤ |Δz|∞ · sqrt(2 KL), r the log-ratio: 0.05 · sqrt(0.022) ≈ 7e-3
        // absolute on a loss of 0.011. Rounding errors of both signs mostly cancel (the two differ by 0.3% here). 10% is
        // inside that bound; a teacher read before its stream finished, or converted wrongly, is off by far more.
        Assert.True(Math.Abs(bf16 - fp32) <= 0.1 * fp32, $"first loss {bf16} with a bf16 teacher vs {fp32} with an fp32 one");
    }

    [Fact]
    public void MissingEmulatorLibraryIsOneErrorNamingThePath()
    {
        string missing = _dir["nowhere/libe3emu.so"];
        var r = Run(missing, "forward", "--model", _dir["unused"], "--tokens", "1", "--device", "emu", "--out", _dir["x.npy"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"device emu: E3_EMU_LIB={missing}: no such file", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr); // no stack trace
    }

    [Fact]
    public void CudaWithoutDriverOrGpuIsOneClearError()
    {
        // The model folder does not exist, so the command fails on any machine; without a driver (as in CI) it must fail
        // on the device, first, with one line naming it. With a driver, it fails on the device (no GPU) or the model.
        var r = Run(null, "forward", "--model", _dir["unused"], "--tokens", "1", "--device", "cuda", "--out", _dir["y.npy"]);
        Assert.Equal(1, r.ExitCode);
        Assert.DoesNotContain("   at ", r.Stderr);
        const string deviceError = "device cuda (ordinal 0): no usable NVIDIA driver and GPU";
        if (!NativeLibraryResolver.TryLoad(CudaLibrary.Driver, out _))
            Assert.Contains(deviceError, r.Stderr);
        else
            Assert.True(r.Stderr.Contains(deviceError) || r.Stderr.Contains(_dir["unused"]), r.Stderr);
    }

    // E3_EMU_LIB is set or removed for the child only, so the library it finds does not depend on the caller's shell.
    static CliProcess.Result Run(string? emuLibrary, params string[] args) =>
        CliProcess.RunWithEnvironment(new Dictionary<string, string?> { ["E3_EMU_LIB"] = emuLibrary }, args);

    public void Dispose() => _dir.Dispose();
}
