using System.Text.Json.Nodes;
using E3.Model;
using E3.Pruning.Export;
using E3.Tests.Support;
using Xunit;

namespace E3.Tests.Export;

public class ExportBadInputTests
{
    /// <summary>Everything in the output's parent folder, so a test can see that no output or temp folder is left.</summary>
    static string[] Entries(string folder) => Directory.GetFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Fact]
    public void AMaskForAModelWithOtherLayersIsRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TempDir();
        ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        var other = RandomModel.Config(ExportTestModels.Spec(Architecture.Qwen3, true) with { Layers = 8 });
        string mask = ExportTestModels.WriteMask(dir["mask.json"], other, [0, 1, 2, 3, 4, 5]);
        Directory.CreateDirectory(dir["outputs"]);

        var e = Assert.Throws<ModelFormatException>(() => new CheckpointExporter().Export(dir["model"], mask, dir["outputs/pruned"]));
        Assert.Equal("num_layers", e.Field);
        Assert.Contains(mask, e.Message);
        Assert.Empty(Entries(dir["outputs"]));
    }

    [Fact]
    public void AMaskForAnotherModelWithTheSameLayerCountIsRefused()
    {
        using var dir = new TempDir();
        ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        // Same shape of mask, but made for an untied model: the config hash differs.
        var other = RandomModel.Config(ExportTestModels.Spec(Architecture.Qwen3, false));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], other);
        Directory.CreateDirectory(dir["outputs"]);

        var e = Assert.Throws<ModelFormatException>(() => new CheckpointExporter().Export(dir["model"], mask, dir["outputs/pruned"]));
        Assert.Equal("model.config_hash", e.Field);
        Assert.Empty(Entries(dir["outputs"]));
    }

    [Theory]
    [InlineData("[]", 0, "keep")]
    [InlineData("[0,2,3,9]", 4, "kept[3]")]
    [InlineData("[0,1,2,3,4,5,6]", 7, "keep")]
    public void AMaskWithKOutOfRangeIsRefusedNamingTheField(string kept, int keep, string field)
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        var json = JsonNode.Parse(File.ReadAllText(ExportTestModels.WriteMask(dir["mask.json"], config)))!.AsObject();
        json["kept"] = JsonNode.Parse(kept);
        json["keep"] = keep;
        json["dropped"] = new JsonArray();
        File.WriteAllText(dir["mask.json"], json.ToJsonString());
        Directory.CreateDirectory(dir["outputs"]);

        var e = Assert.Throws<ModelFormatException>(() => new CheckpointExporter().Export(dir["model"], dir["mask.json"], dir["outputs/pruned"]));
        Assert.Equal(field, e.Field);
        Assert.Equal(dir["mask.json"], e.File);
        Assert.Empty(Entries(dir["outputs"]));
    }

    [Theory]
    [InlineData(false, 1_000)]   // inside the first shard's tensor data
    [InlineData(true, 90_000)]   // a later shard: earlier shards are complete in the temp folder and must go too
    public void DiskFullMidwayLeavesNoOutputAndNoTempFolderAndNamesTheFile(bool sharded, long failAfterBytes)
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, false), sharded ? 40_000 : null);
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        Directory.CreateDirectory(dir["outputs"]);
        var budget = new Budget { Left = failAfterBytes };
        string? failedIn = null;
        var exporter = new CheckpointExporter
        {
            CreateFile = path => new DiskFullStream(new FileStream(path, FileMode.CreateNew), budget, () => failedIn ??= path),
        };

        var e = Assert.Throws<ExportException>(() => exporter.Export(dir["model"], mask, dir["outputs/pruned"]));

        Assert.NotNull(failedIn);
        string file = Path.GetFileName(failedIn);
        Assert.EndsWith(".safetensors", file);
        Assert.Equal(Path.Combine(dir["outputs/pruned"], file), e.Path);
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains(Path.Combine(dir["outputs/pruned"], file), e.Message);
        Assert.Empty(Entries(dir["outputs"]));
    }

    [Fact]
    public void AnExistingOutputIsRefusedUnlessOverwriteAndThenReplacedWhole()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        Directory.CreateDirectory(dir["outputs/pruned"]);
        File.WriteAllText(dir["outputs/pruned/keep-me.txt"], "user data");

        var e = Assert.Throws<ExportException>(() => new CheckpointExporter().Export(dir["model"], mask, dir["outputs/pruned"]));
        Assert.Equal(dir["outputs/pruned"], e.Path);
        Assert.Contains("--force", e.Message);
        Assert.Equal(["keep-me.txt"], Entries(dir["outputs/pruned"]));
        Assert.Equal(["pruned"], Entries(dir["outputs"]));

        // A trailing slash names the same folder.
        new CheckpointExporter().Export(dir["model"], mask, dir["outputs/pruned"] + "/", overwrite: true);
        Assert.False(File.Exists(dir["outputs/pruned/keep-me.txt"]));
        Assert.True(File.Exists(dir["outputs/pruned/model.safetensors"]));
        Assert.Equal(["pruned"], Entries(dir["outputs"]));
    }

    [Fact]
    public void ACheckpointMissingATensorItsConfigImpliesIsRefusedBeforeAnythingIsWritten()
    {
        using var dir = new TempDir();
        ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        // The config now claims a seventh layer the weights do not hold.
        var json = JsonNode.Parse(File.ReadAllText(dir["model/config.json"]))!.AsObject();
        json["num_hidden_layers"] = 7;
        json["max_window_layers"] = 7;
        json["layer_types"]!.AsArray().Add("full_attention");
        File.WriteAllText(dir["model/config.json"], json.ToJsonString());
        string mask = ExportTestModels.WriteMask(dir["mask.json"], ModelConfig.Load(dir["model"]));
        Directory.CreateDirectory(dir["outputs"]);

        var e = Assert.Throws<ExportException>(() => new CheckpointExporter().Export(dir["model"], mask, dir["outputs/pruned"]));
        Assert.Contains("model.layers.6.input_layernorm.weight", e.Message);
        Assert.Contains("model.safetensors", e.Path);
        Assert.Empty(Entries(dir["outputs"]));
    }

    [Fact]
    public void ExportingOntoTheSourceFolderIsRefused()
    {
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["model"], ExportTestModels.Spec(Architecture.Qwen3, true));
        string mask = ExportTestModels.WriteMask(dir["mask.json"], config);
        var before = Entries(dir["model"]);
        Assert.Throws<ExportException>(() => new CheckpointExporter().Export(dir["model"], mask, dir["model"] + "/", overwrite: true));
        Assert.Equal(before, Entries(dir["model"]));
    }

    [Fact]
    public void ForcingAnExportOntoAFolderThatHoldsTheModelIsRefused()
    {
        // --model par/m --out par --force would replace par, and the model in it, with the export.
        using var dir = new TempDir();
        var config = ExportTestModels.Write(dir["par/m"], ExportTestModels.Spec(Architecture.Qwen3, true));
        string mask = ExportTestModels.WriteMask(dir["par/mask.json"], config);
        var before = Entries(dir["par/m"]);
        var e = Assert.Throws<IOException>(() => new CheckpointExporter().Export(dir["par/m"], mask, dir["par"], overwrite: true));
        Assert.Contains($"{dir["par"]} holds {dir["par/m"]}, which this command reads", e.Message);
        Assert.Equal(before, Entries(dir["par/m"]));
        Assert.True(File.Exists(mask));
    }

    /// <summary>Bytes the simulated disk still takes, shared by every file of one export.</summary>
    sealed class Budget
    {
        public long Left;
    }

    /// <summary>A file stream that throws ENOSPC's IOException once a shared byte budget is spent, as a full disk does.</summary>
    sealed class DiskFullStream(FileStream inner, Budget budget, Action onFail) : Stream
    {
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (buffer.Length > budget.Left)
            {
                inner.Write(buffer[..(int)budget.Left]);
                budget.Left = 0;
                onFail();
                throw new IOException("No space left on device");
            }
            inner.Write(buffer);
            budget.Left -= buffer.Length;
        }

        public override void Flush() => inner.Flush();
        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }

        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
