using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

/// <summary>A write that fails leaves neither the target nor a temp file, and never a half-written target.</summary>
public class SafeTensorsWriterFailureTests
{
    [Fact]
    public void DataLengthNotMatchingShapeWritesNothing()
    {
        using var folder = new TempFolder();
        string path = folder.File("out.safetensors");
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path,
        [
            new("ok", SafeTensorsDType.F32, [2], new byte[8]),
            new("bad", SafeTensorsDType.BF16, [3, 2], new byte[10]),
        ]));
        Assert.Contains(path, e.Message);
        Assert.Contains("'bad'", e.Message);
        Assert.Contains("10 data bytes but dtype BF16 x shape [3, 2] needs 12 bytes", e.Message);
        Assert.Empty(folder.FileNames());
    }

    [Fact]
    public void FailedWriteKeepsThePreviousFile()
    {
        using var folder = new TempFolder();
        string path = folder.File("out.safetensors");
        SafeTensorsWriter.Write(path, [new("old", SafeTensorsDType.U8, [1], new byte[] { 42 })]);
        byte[] before = File.ReadAllBytes(path);

        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("new", SafeTensorsDType.F32, [-1], new byte[0])]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("dup", SafeTensorsDType.U8, [0], new byte[0]), new("dup", SafeTensorsDType.U8, [0], new byte[0])]));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["out.safetensors"], folder.FileNames());
    }

    [Fact]
    public void FailureAfterTheTempFileIsWrittenRemovesIt()
    {
        using var folder = new TempFolder();
        // The target is a folder, so the final rename fails after every byte went to the temp file.
        string path = folder.File("occupied");
        Directory.CreateDirectory(path);
        Assert.ThrowsAny<IOException>(() => SafeTensorsWriter.Write(path, [new("x", SafeTensorsDType.U8, [3], new byte[] { 1, 2, 3 })]));
        Assert.Empty(folder.FileNames());
        Assert.Empty(Directory.GetFileSystemEntries(path));
    }

    [Fact]
    public void ShardedWriteValidatesEverythingBeforeWritingAnyShard()
    {
        using var folder = new TempFolder();
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.WriteSharded(folder.Path,
        [
            new("first", SafeTensorsDType.F32, [4], new byte[16]),
            new("second", SafeTensorsDType.F32, [4], new byte[15]),
        ], maxShardBytes: 16));
        Assert.Contains("'second'", e.Message);
        Assert.Empty(folder.FileNames());
    }
}
