using E3.Model;
using E3.Model.IO;
using E3.Pruning.TeacherCache;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.TeacherCache;

/// <summary>The teacher id a cache records: the same config and weights match under any folder name; anything else does not.</summary>
public sealed class TeacherModelIdTests
{
    static TeacherCacheHeader Header(string modelId) => new(4, 50, TeacherCacheDType.Float32, modelId, 8, 100, 0);

    static string Id(string folder) =>
        TeacherCacheHeader.ModelIdOf(Path.GetFileName(folder), ModelConfig.Load(folder).Hash(), CheckpointFingerprint.Of(folder));

    [Fact]
    public void OnlyTheSameConfigAndWeightsMatch()
    {
        using var dir = new TempDir("e3-teacher-id");
        var spec = new RandomModelSpec { Layers = 2, Hidden = 16, Heads = 2, KvHeads = 1, HeadDim = 8, Intermediate = 32, Vocab = 50, Seed = 1 };
        RandomModel.Write(spec, dir["a"]);
        RandomModel.Write(spec, dir["b"]);                    // the same model in another folder
        RandomModel.Write(spec with { Seed = 2 }, dir["c"]);  // same config, other weights
        RandomModel.Write(spec with { Layers = 3 }, dir["d"]); // another config
        var cache = Header(Id(dir["a"]));
        Assert.StartsWith("a#", cache.ModelId);
        Assert.True(cache.IsForModel(Id(dir["b"])));
        Assert.False(cache.IsForModel(Id(dir["c"])));
        Assert.False(cache.IsForModel(Id(dir["d"])));
        Assert.Equal(CheckpointFingerprint.Of(dir["a"]), CheckpointFingerprint.Of(Path.Combine(dir["b"], "model.safetensors")));
    }
}
