using System.Buffers.Binary;
using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

/// <summary>Every malformed file is refused with one exception type whose message names the file, the tensor and the values.</summary>
public class SafeTensorsBadInputTests
{
    const string NormHeader = """{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,64]}}""";

    static SafeTensorsFormatException Rejected(byte[] fileBytes, params string[] fragments)
    {
        using var folder = new TempFolder();
        string path = folder.File("model.safetensors");
        File.WriteAllBytes(path, fileBytes);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsCheckpoint.Open(path).Dispose());
        Assert.Equal(path, e.File);
        Assert.StartsWith(path + ": ", e.Message);
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
        return e;
    }

    static SafeTensorsFormatException RejectedHeader(string header, int dataBytes, params string[] fragments)
        => Rejected(RawSafeTensors.Build(header, new byte[dataBytes]), fragments);

    [Fact]
    public void FileShorterThanTheLengthField()
        => Rejected([1, 0, 0, 0, 0], "5 bytes", "8-byte");

    [Fact]
    public void EmptyFile()
        => Rejected([], "0 bytes");

    [Fact]
    public void DataCutShort()
    {
        // The header promises 64 bytes of data but only 60 follow.
        var e = RejectedHeader(NormHeader, 60, "'model.norm.weight'", "[0, 64)", "data area of 60 bytes");
        Assert.Equal("model.norm.weight", e.Tensor);
    }

    [Fact]
    public void HeaderLengthPastEndOfFile()
        => Rejected(RawSafeTensors.Build(NormHeader, new byte[64], declaredHeaderLength: 5000), "header length 5000", "past the end");

    [Fact]
    public void HugeHeaderLengthIsRejectedBeforeAllocating()
        => Rejected(RawSafeTensors.Build(NormHeader, new byte[64], declaredHeaderLength: 1UL << 62), "header length 4611686018427387904");

    [Fact]
    public void HeaderLengthAboveLimitEvenWhenTheFileIsThatLong()
    {
        // A sparse file just over the 100 MB limit: the length fits the file but is still absurd for a header.
        using var folder = new TempFolder();
        string path = folder.File("big.safetensors");
        using (var stream = File.Create(path))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, 100_000_001);
            stream.Write(length);
            stream.SetLength(8 + 100_000_001);
        }
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsCheckpoint.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains("header length 100000001 exceeds the 100000000-byte limit", e.Message);
    }

    [Fact]
    public void MalformedJson()
        => RejectedHeader("""{"a":{"dtype":"F32",""", 0, "not well-formed JSON");

    [Fact]
    public void InvalidUtf8InHeader()
    {
        byte[] file = RawSafeTensors.Build("{\"a\":1}", []);
        file[10] = 0xFF; // inside the name "a"
        Rejected(file, "not valid UTF-8");
    }

    [Fact]
    public void HeaderNotAnObject()
        => RejectedHeader("[1, 2, 3]", 0, "header is a JSON Array, not an object");

    [Fact]
    public void EntryNotAnObject()
        => RejectedHeader("""{"w":[1]}""", 0, "tensor 'w'", "not an object");

    [Fact]
    public void UnknownDType()
        => RejectedHeader("""{"w":{"dtype":"F42","shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "unknown dtype 'F42'");

    [Fact]
    public void DTypeNamesAreCaseSensitiveAndNotNumbers()
    {
        RejectedHeader("""{"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "unknown dtype 'f32'");
        RejectedHeader("""{"w":{"dtype":"9","shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "unknown dtype '9'");
    }

    [Fact]
    public void MissingDType()
        => RejectedHeader("""{"w":{"shape":[2],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "'dtype'");

    [Fact]
    public void NegativeShape()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "shape [2,-1]", "dimension -1 at axis 1");

    [Fact]
    public void NonIntegerShape()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "dimension 1.5 at axis 0");

    [Fact]
    public void StringShape()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "dimension \"2\"");

    [Fact]
    public void OffsetsOutsideTheDataArea()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}""", 24, "tensor 'w'", "data_offsets [16, 32)", "data area of 24 bytes");

    [Fact]
    public void NegativeOffset()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}""", 8, "tensor 'w'", "[-4,0]", "-4");

    [Fact]
    public void OffsetsNotAPair()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", 8, "tensor 'w'", "[0,4,8]");

    [Fact]
    public void BeginAfterEnd()
        => RejectedHeader("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "tensor 'w'", "data_offsets [8, 0)", "begin after");

    [Fact]
    public void OverlappingTensors()
    {
        const string header = """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}}""";
        RejectedHeader(header, 28, "tensor 'b'", "[12, 28)", "overlap tensor 'a'", "[0, 16)");
    }

    [Fact]
    public void OverlapIsFoundWhateverTheHeaderOrder()
    {
        const string header = """{"b":{"dtype":"U8","shape":[8],"data_offsets":[8,16]},"c":{"dtype":"U8","shape":[4],"data_offsets":[20,24]},"a":{"dtype":"U8","shape":[12],"data_offsets":[0,12]}}""";
        RejectedHeader(header, 24, "tensor 'b'", "[8, 16)", "overlap tensor 'a'", "[0, 12)");
    }

    [Fact]
    public void ByteCountNotDTypeSizeTimesShape()
    {
        var e = RejectedHeader("""{"model.norm.weight":{"dtype":"F32","shape":[16],"data_offsets":[0,96]}}""", 96);
        Assert.EndsWith(": tensor 'model.norm.weight': data_offsets [0, 96) hold 96 bytes but dtype F32 x shape [16] needs 64 bytes", e.Message);
    }

    [Fact]
    public void ShapeProductOverflow()
        => RejectedHeader("""{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}""", 8, "tensor 'w'", "overflows");

    [Fact]
    public void DuplicateTensorName()
    {
        const string header = """{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""";
        RejectedHeader(header, 2, "tensor 'w'", "twice");
    }

    [Fact]
    public void MetadataValueNotAString()
        => RejectedHeader("""{"__metadata__":{"total":5}}""", 0, "__metadata__ key 'total'", "5");

    [Fact]
    public void MissingPathIsNamed()
    {
        string path = Path.Combine(Path.GetTempPath(), "e3-no-such-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<FileNotFoundException>(() => SafeTensorsCheckpoint.Open(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void FolderWithoutCheckpoint()
    {
        using var folder = new TempFolder();
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsCheckpoint.Open(folder.Path));
        Assert.Contains(folder.Path, e.Message);
        Assert.Contains("model.safetensors.index.json", e.Message);
    }
}
