using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

/// <summary>A shard index that disagrees with the shard files is refused, naming the index, the tensor and the shard.</summary>
public class ShardedCheckpointBadInputTests
{
    static void WriteShard(TempFolder folder, string name, params string[] tensorNames)
        => SafeTensorsWriter.Write(folder.File(name), tensorNames.Select(t => new TensorToWrite(t, SafeTensorsDType.F32, [1], new byte[4])));

    static void WriteIndex(TempFolder folder, string weightMapJson)
        => File.WriteAllText(folder.File("model.safetensors.index.json"), $$"""{"metadata":{"total_size":8},"weight_map":{{weightMapJson}}}""");

    static SafeTensorsFormatException Rejected(TempFolder folder, params string[] fragments)
    {
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsCheckpoint.Open(folder.Path).Dispose());
        foreach (string fragment in fragments) Assert.Contains(fragment, e.Message);
        return e;
    }

    [Fact]
    public void IndexPointsAtMissingShard()
    {
        using var folder = new TempFolder();
        WriteShard(folder, "a.safetensors", "x");
        WriteIndex(folder, """{"x":"a.safetensors","y":"b.safetensors"}""");
        Rejected(folder, folder.File("model.safetensors.index.json"), "tensor 'y'", "'b.safetensors'", "does not exist");
    }

    [Fact]
    public void TensorMissingFromItsShard()
    {
        using var folder = new TempFolder();
        WriteShard(folder, "a.safetensors", "x");
        WriteShard(folder, "b.safetensors", "y");
        WriteIndex(folder, """{"x":"a.safetensors","y":"b.safetensors","z":"b.safetensors"}""");
        Rejected(folder, folder.File("model.safetensors.index.json"), "tensor 'z'", "'b.safetensors'", "does not hold it");
    }

    [Fact]
    public void TensorInTheWrongShard()
    {
        using var folder = new TempFolder();
        WriteShard(folder, "a.safetensors", "x", "y");
        WriteShard(folder, "b.safetensors", "w");
        WriteIndex(folder, """{"x":"a.safetensors","y":"b.safetensors"}""");
        Rejected(folder, "tensor 'y'", "'b.safetensors'", "it is in 'a.safetensors'");
    }

    [Fact]
    public void TensorInTwoShards()
    {
        using var folder = new TempFolder();
        WriteShard(folder, "a.safetensors", "x", "shared");
        WriteShard(folder, "b.safetensors", "y", "shared");
        WriteIndex(folder, """{"x":"a.safetensors","y":"b.safetensors","shared":"a.safetensors"}""");
        Rejected(folder, "tensor 'shared'", "two shards", "a.safetensors", "b.safetensors");
    }

    [Fact]
    public void TensorTwiceInWeightMap()
    {
        using var folder = new TempFolder();
        WriteShard(folder, "a.safetensors", "x");
        WriteIndex(folder, """{"x":"a.safetensors","x":"a.safetensors"}""");
        Rejected(folder, "tensor 'x'", "twice in weight_map");
    }

    [Fact]
    public void ShardOutsideTheFolder()
    {
        using var folder = new TempFolder();
        WriteIndex(folder, """{"x":"../elsewhere.safetensors"}""");
        Rejected(folder, "tensor 'x'", "'../elsewhere.safetensors'", "not a plain file name");
    }

    [Fact]
    public void IndexWithoutWeightMap()
    {
        using var folder = new TempFolder();
        File.WriteAllText(folder.File("model.safetensors.index.json"), """{"metadata":{}}""");
        Rejected(folder, folder.File("model.safetensors.index.json"), "weight_map");
    }

    [Fact]
    public void MalformedIndex()
    {
        using var folder = new TempFolder();
        File.WriteAllText(folder.File("model.safetensors.index.json"), """{"weight_map":{""");
        Rejected(folder, folder.File("model.safetensors.index.json"), "not well-formed JSON");
    }

    [Fact]
    public void BadShardHeaderNamesTheShard()
    {
        using var folder = new TempFolder();
        File.WriteAllBytes(folder.File("a.safetensors"), RawSafeTensors.Build("""{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", new byte[4]));
        WriteIndex(folder, """{"x":"a.safetensors"}""");
        Rejected(folder, folder.File("a.safetensors"), "tensor 'x'", "needs 8 bytes");
    }
}
