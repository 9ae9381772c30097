using E3.Backends;
using E3.Interop.Emulator;
using E3.Interop.Gpu;
using E3.Model.Decoder;
using Xunit;

namespace E3.Tests.Model;

/// <summary>
/// The library's one way to choose where to compute: which backend each name and option gives (a GPU's inference
/// backend in bf16, its training backend in fp32, TF32 only where asked), and a clear refusal of what cannot be.
/// </summary>
public sealed class ComputeDeviceTests
{
    [Fact]
    public void CpuIsTheFp32CpuBackendForInferenceAndTraining()
    {
        foreach (bool training in new[] { false, true })
        {
            using var device = ComputeDevice.Open("cpu", new ComputeDeviceOptions { Training = training, Threads = 2 });
            Assert.Equal("cpu", device.Name);
            Assert.Equal(training, device.IsForTraining);
            Assert.Equal(DType.F32, device.Backend.ActivationType);
        }
    }

    [Theory]
    [InlineData(false, false, DType.BF16)]
    [InlineData(true, false, DType.F32)]
    [InlineData(true, true, DType.F32)]
    public void TheEmulatorKeepsBf16ActivationsForInferenceAndFp32ForTraining(bool training, bool tf32, DType activations)
    {
        // The test process binds the test emulator library (a superset of the product one) before anything asks for "emu".
        EmuLibrary.Load(EmuLibrary.TestFileName);
        using var device = ComputeDevice.Open("emu", new ComputeDeviceOptions { Training = training, Tf32 = tf32 });
        Assert.Equal("emu", device.Name);
        var gpu = Assert.IsType<E3.Backends.Gpu.GpuBackend>(device.Backend);
        Assert.Equal(activations, gpu.ActivationType);
        Assert.Equal(tf32 ? GemmCompute.FastTf32 : GemmCompute.Fp32, gpu.Fp32Compute);
    }

    [Fact]
    public void AModelLoadedOntoADeviceComputesLikeOneLoadedOntoItsBackend()
    {
        using var dir = new Support.TempDir();
        E3.Model.RandomModel.Write(new E3.Model.RandomModelSpec { Layers = 3, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 48, Vocab = 64, Seed = 5 }, dir.Path);
        using var device = ComputeDevice.Open("cpu", new ComputeDeviceOptions { Threads = 2 });
        using var viaDevice = DecoderModel.Load(dir.Path, device);
        using var backend = new E3.Backends.Cpu.CpuBackend(2);
        using var direct = DecoderModel.Load(dir.Path, backend);
        int[] tokens = [1, 5, 9, 63, 0];
        Assert.Equal(direct.Forward(tokens), viaDevice.Forward(tokens));
    }

    [Fact]
    public void DisposingTwiceIsHarmlessAndADisposedDeviceIsRefused()
    {
        EmuLibrary.Load(EmuLibrary.TestFileName);
        var device = ComputeDevice.Open("emu");
        device.Dispose();
        device.Dispose(); // a second Dispose (an explicit one inside a using) must not throw
        using var dir = new Support.TempDir();
        E3.Model.RandomModel.Write(new E3.Model.RandomModelSpec { Layers = 1, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 16, Vocab = 32 }, dir.Path);
        Assert.Throws<ObjectDisposedException>(() => DecoderModel.Load(dir.Path, device));
    }

    [Fact]
    public void CudaOpensAGpuOrSaysWhyNot()
    {
        try
        {
            using var device = ComputeDevice.Open("cuda");
            Assert.Equal("cuda", device.Name); // a machine with a GPU
        }
        catch (GpuDeviceUnavailableException e)
        {
            // CI has no GPU: one exception type for every reason, and the message names the device and what is missing.
            Assert.StartsWith("device cuda (ordinal 0): ", e.Message);
        }
    }

    [Fact]
    public void WhatCannotBeOpenedIsRefusedNamingTheValue()
    {
        var unknown = Assert.Throws<ArgumentException>(() => ComputeDevice.Open("tpu"));
        Assert.Contains("'tpu'", unknown.Message);
        Assert.Contains("cpu, cuda, emu", unknown.Message);
        // The name is checked before the options: an unknown device is reported as itself.
        var unknownWithOptions = Assert.Throws<ArgumentException>(() => ComputeDevice.Open("tpu", new ComputeDeviceOptions { Training = true, Tf32 = true }));
        Assert.Contains("'tpu'", unknownWithOptions.Message);

        var tf32OnCpu = Assert.Throws<ArgumentException>(() => ComputeDevice.Open("cpu", new ComputeDeviceOptions { Training = true, Tf32 = true }));
        Assert.Contains("Tf32", tf32OnCpu.Message);
        Assert.Contains("cpu", tf32OnCpu.Message);

        EmuLibrary.Load(EmuLibrary.TestFileName);
        var tf32ForInference = Assert.Throws<ArgumentException>(() => ComputeDevice.Open("emu", new ComputeDeviceOptions { Tf32 = true }));
        Assert.Contains("Training", tf32ForInference.Message);

        var threads = Assert.Throws<ArgumentOutOfRangeException>(() => ComputeDevice.Open("cpu", new ComputeDeviceOptions { Threads = -1 }));
        Assert.Contains("-1", threads.Message);
    }
}
