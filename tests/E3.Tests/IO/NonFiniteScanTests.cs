using System.Runtime.InteropServices;
using CsCheck;
using E3.Backends;
using E3.Model.IO;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.IO;

/// <summary>
/// <see cref="NonFiniteScan"/> against the definition (float.IsFinite of each decoded element, first index wins), and a
/// weight file holding one NaN refused at load, naming the file, the tensor and the element.
/// </summary>
public sealed class NonFiniteScanTests
{
    static readonly DType[] Types = [DType.F32, DType.F16, DType.BF16];

    // Any bit patterns: NaNs with every payload, infinities, subnormals, zeros of both signs.
    static readonly Gen<(DType Type, byte[] Bytes)> Tensors =
        from type in Gen.Int[0, 2].Select(i => Types[i])
        from count in Gen.Int[0, 300]
        from bytes in Gen.Byte.Array[count * type.SizeInBytes()]
        select (type, bytes);

    static long Reference(byte[] bytes, DType type)
    {
        long n = bytes.Length / type.SizeInBytes();
        for (long i = 0; i < n; i++)
            if (!float.IsFinite(NonFiniteScan.ValueAt(bytes, type, i))) return i;
        return -1;
    }

    [Fact]
    public void TheFirstNonFiniteElementIsFoundInAnyBytes() =>
        Tensors.Sample(t => Assert.Equal(Reference(t.Bytes, t.Type), NonFiniteScan.IndexOf(t.Bytes, t.Type)));

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void AcrossParallelChunksTheFirstOneWins(DType type)
    {
        // 10M elements: three chunks of 4M scanned in parallel; bad values in the second and third.
        int size = type.SizeInBytes();
        var bytes = new byte[10_000_000L * size];
        Assert.Equal(-1, NonFiniteScan.IndexOf(bytes, type));
        void Put(long index, float value)
        {
            if (type == DType.F32) MemoryMarshal.Write(bytes.AsSpan((int)(index * 4)), value);
            else MemoryMarshal.Write(bytes.AsSpan((int)(index * 2)), (ushort)(BitConverter.SingleToUInt32Bits(value) >> 16));
        }
        Put(9_999_999, float.NegativeInfinity);
        Assert.Equal(9_999_999, NonFiniteScan.IndexOf(bytes, type));
        Put(5_000_001, float.NaN);
        Assert.Equal(5_000_001, NonFiniteScan.IndexOf(bytes, type));
        Put(4_194_305, float.PositiveInfinity);
        Assert.Equal(4_194_305, NonFiniteScan.IndexOf(bytes, type));
    }

    [Fact]
    public void AWeightFileWithANaNIsRefusedAtLoad()
    {
        using var dir = new TempDir("e3-nan");
        string model = dir["m"];
        E3.Model.RandomModel.Write(new E3.Model.RandomModelSpec { Layers = 2, Hidden = 32, Heads = 4, KvHeads = 2, HeadDim = 8, Intermediate = 64, Vocab = 50, Seed = 1 }, model);
        string weights = Path.Combine(model, "model.safetensors");
        const string name = "model.layers.1.self_attn.q_proj.weight";
        RawSafeTensors.SetF32(weights, float.NaN, name, from: 17, to: 18);

        var r = CliProcess.Run("forward", "--model", model, "--tokens", "1,2", "--out", dir["logits.npy"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"{weights}: {name}: element 17 is NaN: weights must be finite", r.Stderr);
        Assert.False(File.Exists(dir["logits.npy"]));
    }
}
