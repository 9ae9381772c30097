using System.Text.Json;
using E3.Backends;
using E3.Model.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace E3.Tests.IO;

public class SafeTensorsRoundTripTests
{
    public static TheoryData<string, long[]> DTypesAndShapes()
    {
        var data = new TheoryData<string, long[]>();
        long[][] shapes = [[], [0], [7], [2, 3], [2, 0, 4], [1, 3, 5]];
        foreach (var dtype in new[] { SafeTensorsDType.F32, SafeTensorsDType.F16, SafeTensorsDType.BF16 })
            foreach (long[] shape in shapes) data.Add(dtype.ToString(), shape); // by name: the enum is internal to the engine
        return data;
    }

    static ScalarType TorchType(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F32 => ScalarType.Float32,
        SafeTensorsDType.F16 => ScalarType.Float16,
        SafeTensorsDType.BF16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>Random values stored by torch in <paramref name="dtype"/>: torch's bytes, and torch's own widening to fp32.</summary>
    static (byte[] Bytes, float[] Expected) TorchValues(SafeTensorsDType dtype, long[] shape, long seed)
    {
        using var generator = new torch.Generator((ulong)seed);
        using var wide = torch.randn(shape, ScalarType.Float32, generator: generator) * 100;
        using var stored = wide.to(TorchType(dtype));
        using var widened = stored.to(ScalarType.Float32);
        // TorchSharp's accessor cannot enumerate a tensor with an empty middle dimension.
        float[] expected = widened.numel() == 0 ? [] : widened.data<float>().ToArray();
        return (stored.bytes.ToArray(), expected);
    }

    [Theory]
    [MemberData(nameof(DTypesAndShapes))]
    public void WrittenTensorReadsBackAsTorchStoredIt(string dtypeName, long[] shape)
    {
        var dtype = Enum.Parse<SafeTensorsDType>(dtypeName);
        using var folder = new TempFolder();
        string path = folder.File("t.safetensors");
        var (bytes, expected) = TorchValues(dtype, shape, seed: 17);

        SafeTensorsWriter.Write(path, [new TensorToWrite("w", dtype, shape, bytes)]);

        using var checkpoint = SafeTensorsCheckpoint.Open(path);
        TensorEntry entry = checkpoint.Get("w");
        Assert.Equal(dtype, entry.DType);
        Assert.Equal(shape, entry.Shape);
        Assert.Equal(bytes.Length, entry.ByteLength);
        Assert.Equal(bytes, checkpoint.GetBytes("w").ToArray());
        // Widening f16/bf16 to fp32 is exact, so our conversion must equal torch's bit for bit.
        Assert.Equal(expected, checkpoint.ReadFloat32("w"));
        Assert.Equal(dtype switch { SafeTensorsDType.F32 => DType.F32, SafeTensorsDType.F16 => DType.F16, _ => DType.BF16 }, entry.ComputeType);
    }

    [Fact]
    public void MixedDTypesInOneFileKeepOrderAndValues()
    {
        using var folder = new TempFolder();
        string path = folder.File("mixed.safetensors");
        // bf16 first leaves the following f32 tensor at an offset that is not a multiple of 4.
        var half = TorchValues(SafeTensorsDType.BF16, [3], seed: 1);
        var single = TorchValues(SafeTensorsDType.F32, [2, 2], seed: 2);
        var f16 = TorchValues(SafeTensorsDType.F16, [5], seed: 3);
        SafeTensorsWriter.Write(path,
        [
            new("z.bf16", SafeTensorsDType.BF16, [3], half.Bytes),
            new("a.f32", SafeTensorsDType.F32, [2, 2], single.Bytes),
            new("m.f16", SafeTensorsDType.F16, [5], f16.Bytes),
        ]);

        using var checkpoint = SafeTensorsCheckpoint.Open(path);
        Assert.Equal(["z.bf16", "a.f32", "m.f16"], checkpoint.Names);
        Assert.Equal(half.Expected, checkpoint.ReadFloat32("z.bf16"));
        Assert.Equal(single.Expected, checkpoint.ReadFloat32("a.f32"));
        Assert.Equal(f16.Expected, checkpoint.ReadFloat32("m.f16"));
        Assert.True(checkpoint.Contains("a.f32"));
        Assert.False(checkpoint.Contains("A.f32"));
    }

    [Fact]
    public void WriterOutputParsedIndependentlyMatchesTheSpec()
    {
        using var folder = new TempFolder();
        string path = folder.File("spec.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "pruned: layers 3,7" };
        byte[] a = [1, 2, 3, 4, 5, 6], b = [9, 8, 7, 6, 5, 4, 3, 2];
        SafeTensorsWriter.Write(path, [new("a", SafeTensorsDType.I16, [3], a), new("b", SafeTensorsDType.U8, [2, 4], b)], metadata);

        var raw = RawSafeTensors.Parse(File.ReadAllBytes(path));
        // The reference implementation pads the header with spaces so the data area starts 8-byte aligned.
        Assert.Equal(0, raw.HeaderLength % 8);
        Assert.True(raw.HeaderText.Length - raw.HeaderText.TrimEnd(' ').Length < 8, "at most 7 padding spaces");
        Assert.Equal(metadata, raw.Metadata);
        Assert.Equal(["a", "b"], raw.Tensors.Select(t => t.Key));
        Assert.Equal("I16", raw.Tensors[0].Value.DType);
        Assert.Equal([3L], raw.Tensors[0].Value.Shape);
        Assert.Equal(a, raw.Tensors[0].Value.Bytes);
        Assert.Equal("U8", raw.Tensors[1].Value.DType);
        Assert.Equal([2L, 4L], raw.Tensors[1].Value.Shape);
        Assert.Equal(b, raw.Tensors[1].Value.Bytes);
        // Tensors are laid out back to back in the given order: the file is exactly header + 6 + 8 bytes.
        Assert.Equal(8 + raw.HeaderLength + a.Length + b.Length, new FileInfo(path).Length);
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        using var folder = new TempFolder();
        string path = folder.File("meta.safetensors");
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["e3.removed_layers"] = "[3, 7]", ["unicode"] = "Grüße \"quoted\"" };
        SafeTensorsWriter.Write(path, [new("x", SafeTensorsDType.F32, [1], new byte[4])], metadata);

        using var checkpoint = SafeTensorsCheckpoint.Open(path);
        Assert.Equal(metadata.OrderBy(p => p.Key), checkpoint.Metadata.OrderBy(p => p.Key));
    }

    [Fact]
    public void HandBuiltFileFollowingTheSpecIsRead()
    {
        // Written out byte by byte from the format description, independent of SafeTensorsWriter.
        const string header = """{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[12,16]},"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}}""";
        byte[] data =
        [
            0x00, 0x00, 0x80, 0x3F, // 1.0f    = 0x3F800000
            0x00, 0x00, 0x20, 0xC0, // -2.5f   = 0xC0200000
            0x00, 0x00, 0x20, 0x3E, // 0.15625 = 0x3E200000
            0xC0, 0x3F,             // bf16 0x3FC0 = 1.5
            0xF6, 0xC2,             // bf16 0xC2F6 = -123.0
        ];
        using var folder = new TempFolder();
        string path = folder.File("hand.safetensors");
        File.WriteAllBytes(path, RawSafeTensors.Build(header, data));

        using var checkpoint = SafeTensorsCheckpoint.Open(path);
        Assert.Equal(["b", "a"], checkpoint.Names);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        TensorEntry b = checkpoint.Get("b");
        Assert.Equal(8 + header.Length + 12, b.DataOffset);
        Assert.Equal(4, b.ByteLength);
        Assert.Equal(path, b.File);
        Assert.Equal([1.0f, -2.5f, 0.15625f], checkpoint.ReadFloat32("a"));
        Assert.Equal([1.5f, -123.0f], checkpoint.ReadFloat32("b"));
    }

    [Fact]
    public void FolderWithModelSafetensorsOpens()
    {
        using var folder = new TempFolder();
        SafeTensorsWriter.Write(folder.File("model.safetensors"), [new("x", SafeTensorsDType.F32, [2], new byte[8])]);
        using var checkpoint = SafeTensorsCheckpoint.Open(folder.Path);
        Assert.Equal([0f, 0f], checkpoint.ReadFloat32("x"));
    }

    [Fact]
    public void ShardedRoundTripSplitsByMaxShardBytes()
    {
        using var folder = new TempFolder();
        byte[] Bytes(int n, byte seed) => Enumerable.Range(0, n).Select(i => (byte)(i * 31 + seed)).ToArray();
        var tensors = new TensorToWrite[]
        {
            new("embed", SafeTensorsDType.F32, [10], Bytes(40, 1)),
            new("layer.0", SafeTensorsDType.F32, [2, 5], Bytes(40, 2)),
            new("layer.1", SafeTensorsDType.BF16, [50], Bytes(100, 3)), // larger than a shard: gets its own
            new("norm", SafeTensorsDType.F16, [4], Bytes(8, 4)),
            new("empty", SafeTensorsDType.F32, [0, 3], Array.Empty<byte>()),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };

        string index = SafeTensorsWriter.WriteSharded(folder.Path, tensors, maxShardBytes: 64, metadata);

        // 40 | 40 (40+40 > 64) | 100 | 8 + 0: four shards, named as Hugging Face names them.
        string[] shards = Enumerable.Range(1, 4).Select(i => $"model-{i:D5}-of-00004.safetensors").ToArray();
        Assert.Equal([.. shards, "model.safetensors.index.json"], folder.FileNames());
        Assert.Equal(folder.File("model.safetensors.index.json"), index);

        using (var json = JsonDocument.Parse(File.ReadAllBytes(index)))
        {
            Assert.Equal(188, json.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
            var map = json.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
            Assert.Equal(shards[0], map["embed"]);
            Assert.Equal(shards[1], map["layer.0"]);
            Assert.Equal(shards[2], map["layer.1"]);
            Assert.Equal(shards[3], map["norm"]);
            Assert.Equal(shards[3], map["empty"]);
        }
        // Each shard is a complete safetensors file on its own.
        var third = RawSafeTensors.Parse(File.ReadAllBytes(folder.File(shards[2])));
        Assert.Equal(tensors[2].Data.ToArray(), Assert.Single(third.Tensors).Value.Bytes);

        using var checkpoint = SafeTensorsCheckpoint.Open(folder.Path);
        Assert.Equal(tensors.Select(t => t.Name), checkpoint.Names);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        int[] shardOfTensor = [0, 1, 2, 3, 3];
        for (int i = 0; i < tensors.Length; i++)
        {
            Assert.Equal(tensors[i].Data.ToArray(), checkpoint.GetBytes(tensors[i].Name).ToArray());
            Assert.Equal(tensors[i].Shape, checkpoint.Get(tensors[i].Name).Shape);
            Assert.Equal(folder.File(shards[shardOfTensor[i]]), checkpoint.Get(tensors[i].Name).File);
        }
    }

    [Fact]
    public void NonFloatDTypeIsNamedWhenAskedForComputeTypeOrFloats()
    {
        using var folder = new TempFolder();
        string path = folder.File("ints.safetensors");
        SafeTensorsWriter.Write(path, [new("position_ids", SafeTensorsDType.I64, [2], new byte[16])]);
        using var checkpoint = SafeTensorsCheckpoint.Open(path);

        var e1 = Assert.Throws<SafeTensorsFormatException>(() => checkpoint.Get("position_ids").ComputeType);
        var e2 = Assert.Throws<SafeTensorsFormatException>(() => checkpoint.ReadFloat32("position_ids"));
        foreach (var e in new[] { e1, e2 })
        {
            Assert.Contains(path, e.Message);
            Assert.Contains("'position_ids'", e.Message);
            Assert.Contains("I64", e.Message);
        }
    }

    [Fact]
    public void MissingTensorNameIsNamedAndDisposeEndsReads()
    {
        using var folder = new TempFolder();
        string path = folder.File("one.safetensors");
        SafeTensorsWriter.Write(path, [new("x", SafeTensorsDType.F32, [1], new byte[4])]);
        var checkpoint = SafeTensorsCheckpoint.Open(path);

        var e = Assert.Throws<SafeTensorsFormatException>(() => checkpoint.Get("lm_head.weight"));
        Assert.Equal($"{path}: tensor 'lm_head.weight': no such tensor in the checkpoint", e.Message);

        checkpoint.Dispose();
        Assert.Throws<ObjectDisposedException>(() => checkpoint.ReadFloat32("x"));
        checkpoint.Dispose(); // a second Dispose is harmless
    }
}
