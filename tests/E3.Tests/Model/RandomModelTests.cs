using E3.Backends.Numerics;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Model;

/// <summary>
/// <c>e3 model init</c>'s weights: each tensor is its <see cref="SeededNormal"/> stream block by block, scaled as the
/// spec says, whatever the thread count or the batching of blocks; the bf16 file holds the fp32 file's values rounded.
/// </summary>
public sealed class RandomModelTests : IDisposable
{
    readonly TempDir _dir = new();

    // An embedding of 4096 x 1280 = 5 blocks of SeededNormal.BlockValues and a bit: more than one batch of blocks on a
    // machine with two cores, and a short last block.
    static RandomModelSpec Spec(string dtype, int seed = 4) => new()
    {
        Architecture = Architecture.Qwen3, Layers = 1, Hidden = 1280, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 32,
        Vocab = 4097, Seed = seed, Dtype = dtype, InitStd = 0.05f,
    };

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void EachTensorIsItsSeededStreamScaled()
    {
        var spec = Spec("float32");
        var config = RandomModel.Write(spec, _dir["f32"]);
        var expected = WeightNames.Expected(config).ToList();
        using var checkpoint = SafeTensorsCheckpoint.Open(_dir["f32"]);
        foreach (string name in new[] { WeightNames.Embedding, "model.layers.0.input_layernorm.weight", "model.layers.0.self_attn.q_proj.weight" })
        {
            int index = expected.FindIndex(e => e.Name == name);
            float[] got = checkpoint.ReadFloat32(name);
            bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal);
            var want = new float[got.Length];
            ulong key = SeededNormal.Key(spec.Seed, index);
            for (long b = 0; b * SeededNormal.BlockValues < want.Length; b++)
            {
                int start = (int)(b * SeededNormal.BlockValues);
                var block = want.AsSpan(start, Math.Min(SeededNormal.BlockValues, want.Length - start));
                SeededNormal.FillBlock(key, b, block);
                foreach (ref float v in block) v = norm ? 1f + 0.1f * v : spec.InitStd * v;
            }
            Assert.Equal(want, got);
        }
        // The scale itself, on the 5M-value embedding: the sample std of a normal has relative standard error 1/sqrt(2n).
        float[] embedding = checkpoint.ReadFloat32(WeightNames.Embedding);
        double std = Math.Sqrt(embedding.Average(v => (double)v * v));
        Assert.InRange(std / spec.InitStd, 1 - 5 / Math.Sqrt(2.0 * embedding.Length), 1 + 5 / Math.Sqrt(2.0 * embedding.Length));
    }

    [Fact]
    public void Bf16FileHoldsTheFp32ValuesRounded()
    {
        RandomModel.Write(Spec("float32"), _dir["f32"]);
        RandomModel.Write(Spec("bfloat16"), _dir["bf16"]);
        using var f32 = SafeTensorsCheckpoint.Open(_dir["f32"]);
        using var bf16 = SafeTensorsCheckpoint.Open(_dir["bf16"]);
        Assert.Equal(f32.Names.Order(), bf16.Names.Order());
        foreach (string name in f32.Names)
        {
            Assert.Equal(SafeTensorsDType.BF16, bf16.Get(name).DType);
            float[] rounded = f32.ReadFloat32(name);
            BFloat16.Round(rounded);
            Assert.Equal(rounded, bf16.ReadFloat32(name));
        }
    }

    [Fact]
    public void SameSpecGivesTheSameFileAndAnotherSeedDoesNot()
    {
        RandomModel.Write(Spec("bfloat16"), _dir["a"]);
        RandomModel.Write(Spec("bfloat16"), _dir["b"]);
        RandomModel.Write(Spec("bfloat16", seed: 5), _dir["c"]);
        byte[] a = File.ReadAllBytes(Path.Combine(_dir["a"], SafeTensorsCheckpoint.SingleFileName));
        Assert.Equal(a, File.ReadAllBytes(Path.Combine(_dir["b"], SafeTensorsCheckpoint.SingleFileName)));
        Assert.NotEqual(a, File.ReadAllBytes(Path.Combine(_dir["c"], SafeTensorsCheckpoint.SingleFileName)));
    }

    [Fact]
    public void AnOutputPathEndingInASeparatorNamesTheFolderItself()
    {
        // As the README writes it: e3 model init … --out m/
        string target = _dir["slash"];
        var spec = Spec("float32") with { Vocab = 64, Hidden = 32 };
        RandomModel.Write(spec, target + Path.DirectorySeparatorChar);
        Assert.Equal(["config.json", SafeTensorsCheckpoint.SingleFileName], Directory.GetFiles(target).Select(Path.GetFileName).Order());
        Assert.Empty(Directory.GetDirectories(target));
        Assert.Equal(["slash"], Directory.GetFileSystemEntries(Path.GetDirectoryName(target)!).Select(Path.GetFileName).Where(n => n!.Contains("slash")));
    }
}
