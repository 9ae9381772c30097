using CsCheck;
using E3.Model.IO;
using Xunit;

namespace E3.Tests.IO;

/// <summary>Random files of random dtypes and shapes (0-d and empty included) read back exactly, by us and by an independent parse.</summary>
public class SafeTensorsPropertyTests
{
    sealed record RandomTensor(SafeTensorsDType DType, long[] Shape, byte[] Data);

    static readonly Gen<RandomTensor> TensorGen =
        from dtype in Gen.Enum<SafeTensorsDType>()
        from shape in Gen.Long[0, 4].Array[0, 3]
        from data in Gen.Byte.Array[(int)(shape.Aggregate(1L, (p, d) => p * d) * dtype.SizeInBytes())]
        select new RandomTensor(dtype, shape, data);

    static readonly Gen<(RandomTensor[] Tensors, bool WithMetadata)> FileGen =
        Gen.Select(TensorGen.Array[1, 5], Gen.Bool);

    [Fact]
    public void RandomFilesRoundTrip()
    {
        using var folder = new TempFolder();
        string path = folder.File("random.safetensors");
        FileGen.Sample((tensors, withMetadata) =>
        {
            var metadata = withMetadata ? new Dictionary<string, string> { ["format"] = "pt", ["n"] = tensors.Length.ToString() } : null;
            var toWrite = tensors.Select((t, i) => new TensorToWrite($"t{i}", t.DType, t.Shape, t.Data)).ToList();
            SafeTensorsWriter.Write(path, toWrite, metadata);

            var raw = RawSafeTensors.Parse(File.ReadAllBytes(path));
            using var checkpoint = SafeTensorsCheckpoint.Open(path);
            Assert.Equal(toWrite.Select(t => t.Name), checkpoint.Names);
            Assert.Equal(metadata?.Count ?? 0, checkpoint.Metadata.Count);
            for (int i = 0; i < tensors.Length; i++)
            {
                TensorEntry entry = checkpoint.Get($"t{i}");
                Assert.Equal(tensors[i].DType, entry.DType);
                Assert.Equal(tensors[i].Shape, entry.Shape);
                Assert.Equal(tensors[i].Data, checkpoint.GetBytes($"t{i}").ToArray());
                Assert.Equal(tensors[i].DType.ToString(), raw.Tensors[i].Value.DType);
                Assert.Equal(tensors[i].Shape, raw.Tensors[i].Value.Shape);
                Assert.Equal(tensors[i].Data, raw.Tensors[i].Value.Bytes);
            }
        }, seed: Seed, iter: 200, threads: 1);
        Assert.Equal(["random.safetensors"], folder.FileNames());
    }

    // A fixed seed keeps the run reproducible; CsCheck reports a new seed for any failure it finds.
    static readonly string Seed = new PCG(7, 20261128).ToString();
}
