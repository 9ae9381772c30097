using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

/// <summary>
/// <see cref="SafeTensorsWriter.WriteStreamed"/>: the same file as <see cref="SafeTensorsWriter.Write"/> for the same
/// tensors, and a producer that breaks its promise leaves nothing behind.
/// </summary>
public class SafeTensorsStreamedWriteTests
{
    static readonly TensorToWrite[] Tensors =
    [
        new("a", SafeTensorsDType.F32, [2, 3], Enumerable.Range(0, 24).Select(i => (byte)i).ToArray()),
        new("b.weight", SafeTensorsDType.BF16, [5], Enumerable.Range(100, 10).Select(i => (byte)i).ToArray()),
        new("empty", SafeTensorsDType.U8, [0], Array.Empty<byte>()),
    ];

    static TensorLayout[] Layouts => Tensors.Select(t => new TensorLayout(t.Name, t.DType, t.Shape, t.Data.Length)).ToArray();

    [Fact]
    public void StreamedFileIsByteForByteTheBufferedOne()
    {
        using var folder = new TempFolder();
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        SafeTensorsWriter.Write(folder.File("buffered.safetensors"), Tensors, metadata);
        // The producer writes in two pieces, as a chunked generator does.
        SafeTensorsWriter.WriteStreamed(folder.File("streamed.safetensors"), Layouts, (i, stream) =>
        {
            var data = Tensors[i].Data.Span;
            stream.Write(data[..(data.Length / 2)]);
            stream.Write(data[(data.Length / 2)..]);
        }, metadata);
        Assert.Equal(File.ReadAllBytes(folder.File("buffered.safetensors")), File.ReadAllBytes(folder.File("streamed.safetensors")));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    public void ProducerWritingTheWrongLengthLeavesNoFile(int extra)
    {
        using var folder = new TempFolder();
        string path = folder.File("out.safetensors");
        var e = Assert.Throws<InvalidOperationException>(() => SafeTensorsWriter.WriteStreamed(path, Layouts, (i, stream) =>
        {
            var data = Tensors[i].Data.Span;
            if (Tensors[i].Name == "b.weight") stream.Write(extra < 0 ? data[..^1] : [.. data.ToArray(), 0]);
            else stream.Write(data);
        }));
        Assert.Contains(path, e.Message);
        Assert.Contains($"tensor 'b.weight': the producer wrote {10 + extra} bytes where the header says 10", e.Message);
        Assert.Empty(folder.FileNames());
    }

    [Fact]
    public void LayoutNotMatchingItsShapeIsRefusedBeforeAnyProducerRuns()
    {
        using var folder = new TempFolder();
        string path = folder.File("out.safetensors");
        int calls = 0;
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.WriteStreamed(path,
            [new TensorLayout("ok", SafeTensorsDType.F32, [2], 8), new TensorLayout("bad", SafeTensorsDType.BF16, [3, 2], 10)],
            (_, _) => calls++));
        Assert.Contains("'bad': 10 data bytes but dtype BF16 x shape [3, 2] needs 12 bytes", e.Message);
        Assert.Equal(0, calls);
        Assert.Empty(folder.FileNames());
    }

    [Fact]
    public void ProducerThatThrowsLeavesNoFile()
    {
        using var folder = new TempFolder();
        string path = folder.File("out.safetensors");
        Assert.Throws<IOException>(() => SafeTensorsWriter.WriteStreamed(path, Layouts, (i, stream) =>
        {
            if (i == 1) throw new IOException("disk full");
            stream.Write(Tensors[i].Data.Span);
        }));
        Assert.Empty(folder.FileNames());
    }
}
