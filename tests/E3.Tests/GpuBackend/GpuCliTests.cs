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
