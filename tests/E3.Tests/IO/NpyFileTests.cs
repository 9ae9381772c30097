using CsCheck;
using System.Buffers.Binary;
using System.Text;
using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

public class NpyFileTests
{
    [Fact]
    public void WrittenFloat32MatrixHasTheExactNumpyLayout()
    {
        using var folder = new TempFolder();
        string path = folder.File("logits.npy");
        float[] values = [1f, -2f, 0.5f, float.MaxValue, -0f, 3.25f];

        NpyFile.WriteFloat32(path, values, rows: 2, cols: 3);

        byte[] file = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }, file[..8]);
        int headerLength = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(8));
        int dataStart = 10 + headerLength;
        Assert.Equal(0, dataStart % 64);
        string header = Encoding.Latin1.GetString(file, 10, headerLength);
        Assert.StartsWith("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", header);
        Assert.EndsWith("\n", header);
        Assert.Equal("", header[..^1].Substring(header.IndexOf('}') + 1).Trim(' '));
        Assert.Equal(RawNpy.Floats(values), file[dataStart..]);

        NpyArray<float> read = NpyFile.Read<float>(path);
        Assert.Equal(values, read.Data);
        Assert.Equal([2L, 3L], read.Shape);
        NpyHeader parsed = NpyFile.ReadHeader(path);
        Assert.Equal(NpyDType.Float32, parsed.DType);
        Assert.Equal(dataStart, parsed.DataOffset);
    }

    [Theory]
    [InlineData(new long[] { }, "()")]
    [InlineData(new long[] { 5 }, "(5,)")]
    [InlineData(new long[] { 0, 7 }, "(0, 7)")]
    [InlineData(new long[] { 2, 1, 3 }, "(2, 1, 3)")]
    public void ShapesRoundTripWithPythonTupleSyntax(long[] shape, string tuple)
    {
        using var folder = new TempFolder();
        string path = folder.File("a.npy");
        float[] values = Enumerable.Range(0, (int)shape.Aggregate(1L, (p, d) => p * d)).Select(i => i * 0.25f - 1).ToArray();

        NpyFile.WriteFloat32(path, values, shape);

        Assert.Contains($"'shape': {tuple}, }}", File.ReadAllText(path, Encoding.Latin1));
        NpyArray<float> read = NpyFile.Read<float>(path);
        Assert.Equal(values, read.Data);
        Assert.Equal(shape, read.Shape);
    }

    [Fact]
    public void HandBuiltIntegerFilesAreRead()
    {
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("i4.npy"), RawNpy.Build("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", RawNpy.Int32s(-1, 0, 2147483647)));
        File.WriteAllBytes(folder.File("u4.npy"), RawNpy.Build("{'descr': '<u4', 'fortran_order': False, 'shape': (2, 1), }", RawNpy.UInt32s(4000000000, 7)));
        // Version 2.0 has a 4-byte header length; key order and quoting differ from numpy's own output.
        File.WriteAllBytes(folder.File("i8.npy"), RawNpy.Build("{\"shape\": (2,2), \"fortran_order\": False, \"descr\": \"<i8\"}", RawNpy.Int64s(1L << 40, -5, 0, 9), major: 2));

        Assert.Equal([-1, 0, int.MaxValue], NpyFile.Read<int>(folder.File("i4.npy")).Data);
        var u4 = NpyFile.Read<uint>(folder.File("u4.npy"));
        Assert.Equal([4000000000u, 7u], u4.Data);
        Assert.Equal([2L, 1L], u4.Shape);
        var i8 = NpyFile.Read<long>(folder.File("i8.npy"));
        Assert.Equal([1L << 40, -5, 0, 9], i8.Data);
        Assert.Equal(NpyDType.Int64, NpyFile.ReadHeader(folder.File("i8.npy")).DType);
    }

    static NpyFormatException Rejected(byte[] bytes, params string[] fragments)
    {
        using var folder = new TempFolder();
        string path = folder.File("bad.npy");
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read<float>(path));
        Assert.StartsWith(path + ": ", e.Message);
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
        return e;
    }

    const string F4Header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";

    [Fact]
    public void BadMagic()
        => Rejected(RawNpy.Build(F4Header, new byte[8], magic: [0x50, 0x4B, 0x03, 0x04, 0x61, 0x62]), "bad magic", "504B03046162");

    [Fact]
    public void TooShortForPreamble()
        => Rejected([0x93, (byte)'N', (byte)'U'], "3 bytes");

    [Fact]
    public void UnsupportedVersion()
        => Rejected(RawNpy.Build(F4Header, new byte[8], major: 4), "version 4.0");

    [Fact]
    public void UnsupportedDType()
        => Rejected(RawNpy.Build("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", new byte[8]), "unsupported dtype '<f8'");

    [Fact]
    public void BigEndianIsUnsupported()
        => Rejected(RawNpy.Build("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", new byte[8]), "'>f4'");

    [Fact]
    public void FortranOrder()
        => Rejected(RawNpy.Build("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", new byte[16]), "fortran_order is True");

    [Fact]
    public void DataShorterThanShape()
        => Rejected(RawNpy.Build("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new byte[20]), "data is 20 bytes", "(2, 3)", "needs 24 bytes");

    [Fact]
    public void DataLongerThanShape()
        => Rejected(RawNpy.Build(F4Header, new byte[12]), "data is 12 bytes", "needs 8 bytes");

    [Fact]
    public void HeaderLengthPastEnd()
    {
        byte[] bytes = RawNpy.Build(F4Header, new byte[8]);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), 60000);
        Rejected(bytes, "header length 60000", "past the end");
    }

    [Fact]
    public void MalformedDictionary()
        => Rejected(RawNpy.Build("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", new byte[8]), "header dictionary", "'Maybe");

    [Fact]
    public void MissingShape()
        => Rejected(RawNpy.Build("{'descr': '<f4', 'fortran_order': False, }", new byte[4]), "'shape'");

    [Fact]
    public void NegativeDimension()
        => Rejected(RawNpy.Build("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", []), "negative dimension -2");

    [Fact]
    public void WrongElementTypeRequested()
    {
        using var folder = new TempFolder();
        string path = folder.File("ids.npy");
        File.WriteAllBytes(path, RawNpy.Build("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", RawNpy.Int32s(3)));
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read<float>(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("<i4", e.Message);
        Assert.Contains("Single", e.Message);
    }

    [Fact]
    public void WriteWithMismatchedShapeLeavesNoFile()
    {
        using var folder = new TempFolder();
        string path = folder.File("out.npy");
        var e = Assert.Throws<ArgumentException>(() => NpyFile.WriteFloat32(path, new float[5], rows: 2, cols: 3));
        Assert.Contains(path, e.Message);
        Assert.Contains("5 values but shape (2, 3) needs 6", e.Message);
        Assert.Empty(folder.FileNames());
    }
}

/// <summary>Random float32 arrays of random shape survive a write and read, and the bytes after the header are exactly the values.</summary>
public class NpyFilePropertyTests
{
    [Fact]
    public void RandomArraysRoundTrip()
    {
        var gen = from shape in Gen.Long[0, 5].Array[0, 3]
                  from values in Gen.Float.Array[(int)shape.Aggregate(1L, (p, d) => p * d)]
                  select (shape, values);
        using var folder = new TempFolder();
        string path = folder.File("r.npy");
        gen.Sample(sample =>
        {
            NpyFile.WriteFloat32(path, sample.values, sample.shape);
            byte[] file = File.ReadAllBytes(path);
            int dataStart = 10 + BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(8));
            Assert.Equal(0, dataStart % 64);
            Assert.Equal(RawNpy.Floats(sample.values), file[dataStart..]);
            NpyArray<float> read = NpyFile.Read<float>(path);
            Assert.Equal(sample.shape, read.Shape);
            Assert.Equal(sample.values, read.Data);
        }, seed: new PCG(11, 20261128).ToString(), iter: 100, threads: 1);
        Assert.Equal(["r.npy"], folder.FileNames());
    }
}
