using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Pruning.Masks;

namespace E3.Pruning.Export;

/// <summary>What an export wrote.</summary>
/// <param name="OutputPath">The output folder (absolute).</param>
/// <param name="SourceLayers">The source model's layer count.</param>
/// <param name="Kept">Source indices of the kept layers, ascending; kept layer i became layer i of the export.</param>
/// <param name="Files">File names written into the output folder.</param>
/// <param name="Tensors">Tensors written.</param>
/// <param name="TensorBytes">Tensor data bytes written (headers excluded).</param>
/// <param name="Sharded">Whether the checkpoint was written as shards with model.safetensors.index.json.</param>
public sealed record ExportResult(string OutputPath, int SourceLayers, IReadOnlyList<int> Kept, IReadOnlyList<string> Files,
    int Tensors, long TensorBytes, bool Sharded);

/// <summary>
/// Writes a pruned Hugging Face checkpoint: the source model without the layers a mask drops, the kept layers
/// renumbered consecutively, config.json rewritten (<see cref="PrunedConfig"/>), tokenizer and generation files copied.
/// </summary>
/// <remarks>
/// Tensor bytes are copied, never converted: a bf16 checkpoint stays bf16 bit for bit. Tied and untied LM heads need
/// no special case: whatever tensors the source holds outside the layers (lm_head.weight or not) are copied as they are.
/// A single-file source gives model.safetensors; a sharded source gives shards again, packed in source order up to
/// the largest source shard's data size (the max shard size the source was written with is not recorded in the
/// checkpoint; its largest shard is the closest bound that the source itself obeys), with a rewritten
/// model.safetensors.index.json. Everything is written to a temp folder beside the output and renamed into place at
/// the end: a failure leaves neither the output nor the temp folder.
/// </remarks>
public sealed class CheckpointExporter
{
    /// <summary>Files copied from the source folder when present.</summary>
    public static readonly IReadOnlyList<string> CopiedFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
        "tokenizer.model", "added_tokens.json", "chat_template.jinja", "generation_config.json",
    ];

    /// <summary>
    /// Creates each output file (given its path inside the temp folder). A test hook: the disk-full test swaps in a
    /// stream that fails midway.
    /// </summary>
    internal Func<string, Stream> CreateFile { get; init; } =
        path => new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);

    /// <summary>Called after each tensor is written with (tensors written, tensors in all, tensor bytes written).</summary>
    public Action<int, int, long>? Progress { get; init; }

    /// <summary>Exports <paramref name="modelDir"/> pruned by the mask file at <paramref name="maskPath"/>.</summary>
    public ExportResult Export(string modelDir, string maskPath, string outDir, bool overwrite = false) =>
        Export(modelDir, MaskFile.Load(maskPath), maskPath, outDir, overwrite);

    /// <summary>
    /// Exports <paramref name="modelDir"/> pruned by <paramref name="mask"/> into <paramref name="outDir"/>. The mask
    /// must have been made for this model (<see cref="MaskFile.EnsureMatches"/>); an existing output is refused unless
    /// <paramref name="overwrite"/>. Both are checked, and every tensor the config implies is checked for presence and
    /// shape, before anything is written.
    /// </summary>
    /// <param name="maskSource">Where the mask came from, for error messages.</param>
    public ExportResult Export(string modelDir, MaskFile mask, string maskSource, string outDir, bool overwrite = false)
    {
        ModelConfig config = ModelConfig.Load(modelDir);
        mask.EnsureMatches(config, maskSource);
        // Without the trailing separator, "out/" names the folder itself, not an empty entry inside it.
        string output = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir));
        if (output == Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDir)))
            throw new ExportException(output, "is the source model folder; export to a different folder");
        if (!overwrite && (Directory.Exists(output) || File.Exists(output)))
            throw new ExportException(output, "already exists; choose another --out or pass --force to replace it");
        // --force replaces the folder: it must not hold the model or the mask it reads (the model's parent, say).
        OutputFolder.RefuseIfItHolds(output, [modelDir, File.Exists(maskSource) ? maskSource : null]);

        using SafeTensorsCheckpoint source = SafeTensorsCheckpoint.Open(modelDir);
        CheckExpectedTensors(config, source);
        var renumbering = new LayerRenumbering(config.NumLayers, mask.Kept);
        List<(string Name, TensorEntry Entry)> plan = [];
        foreach (string name in source.Names)
            if (renumbering.Rename(name, source.Path) is { } renamed) plan.Add((renamed, source.Get(name)));
        bool sharded = source.Path.EndsWith(SafeTensorsCheckpoint.IndexFileName, StringComparison.Ordinal);

        using var staging = StagingFolder.Create(output);
        var files = new List<string>();
        var writer = new FolderWriter(this, staging.Path, output, files);
        var metadata = new Dictionary<string, string>(source.Metadata, StringComparer.Ordinal);
        // transformers refuses safetensors files whose metadata lacks a known format; the source may have omitted it.
        metadata.TryAdd("format", "pt");
        int tensorsDone = 0;
        long bytesDone = 0;
        void Copied(TensorEntry entry) => Progress?.Invoke(++tensorsDone, plan.Count, bytesDone += entry.ByteLength);
        if (sharded) WriteShards(writer, source, plan, metadata, Copied);
        else writer.Write(SafeTensorsCheckpoint.SingleFileName, s => WriteSafeTensors(s, source, plan, metadata, Copied));

        JsonObject prunedConfig = PrunedConfig.Rewrite(config.Json, mask.Kept);
        writer.Write("config.json", s => WriteJson(s, prunedConfig));
        foreach (string name in CopiedFiles)
        {
            string from = Path.Combine(modelDir, name);
            if (!File.Exists(from)) continue;
            writer.Write(name, s =>
            {
                using var input = File.OpenRead(from);
                input.CopyTo(s);
            });
        }
        staging.Commit();
        return new ExportResult(output, config.NumLayers, mask.Kept, files, plan.Count, plan.Sum(p => p.Entry.ByteLength), sharded);
    }

    static void CheckExpectedTensors(ModelConfig config, SafeTensorsCheckpoint source)
    {
        foreach (var (name, shape) in WeightNames.Expected(config))
        {
            if (!source.Contains(name))
                throw new ExportException(source.Path, $"tensor '{name}' is missing, but {config.SourcePath} implies it");
            TensorEntry entry = source.Get(name);
            if (!entry.Shape.AsSpan().SequenceEqual(shape))
                throw new ExportException(entry.File, $"tensor '{name}' has shape {entry.ShapeText}; {config.SourcePath} implies [{string.Join(", ", shape)}]");
        }
    }

    static void WriteShards(FolderWriter writer, SafeTensorsCheckpoint source, List<(string Name, TensorEntry Entry)> plan,
        IReadOnlyDictionary<string, string> metadata, Action<TensorEntry> copied)
    {
        long maxShardBytes = source.Names.Select(source.Get).GroupBy(e => e.File).Max(g => g.Sum(e => e.ByteLength));
        var shards = SafeTensorsWriter.PackShards(plan, t => t.Entry.ByteLength, maxShardBytes);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string shardName = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            var shard = shards[i];
            writer.Write(shardName, s => WriteSafeTensors(s, source, shard, metadata, copied));
            foreach (var (name, _) in shard) weightMap[name] = shardName;
        }
        JsonObject index = RewriteIndex(source.Path, plan, weightMap);
        writer.Write(SafeTensorsCheckpoint.IndexFileName, s => WriteJson(s, index));
    }

    /// <summary>The source index with total_size (and total_parameters, when present) and weight_map replaced.</summary>
    static JsonObject RewriteIndex(string sourceIndex, List<(string Name, TensorEntry Entry)> plan, SortedDictionary<string, string> weightMap)
    {
        var index = JsonNode.Parse(File.ReadAllText(sourceIndex)) as JsonObject
            ?? throw new ExportException(sourceIndex, "is not a JSON object");
        var metadata = index["metadata"] as JsonObject ?? new JsonObject();
        index["metadata"] = metadata;
        metadata["total_size"] = plan.Sum(p => p.Entry.ByteLength);
        if (metadata.ContainsKey("total_parameters")) metadata["total_parameters"] = plan.Sum(p => p.Entry.ElementCount);
        index["weight_map"] = new JsonObject(weightMap.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value)));
        return index;
    }

    static void WriteSafeTensors(Stream stream, SafeTensorsCheckpoint source, List<(string Name, TensorEntry Entry)> tensors,
        IReadOnlyDictionary<string, string> metadata, Action<TensorEntry> copied)
    {
        byte[] header = SafeTensorsWriter.HeaderBytes(
            tensors.Select(t => new TensorLayout(t.Name, t.Entry.DType, t.Entry.Shape, t.Entry.ByteLength)), metadata);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var (_, entry) in tensors)
        {
            stream.Write(source.GetBytes(entry.Name));
            copied(entry);
        }
    }

    static void WriteJson(Stream stream, JsonObject json)
    {
        // Relaxed escaping keeps strings readable ('+', '<', non-ASCII are not turned into \uXXXX); the values are the same to any JSON reader.
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        json.WriteTo(writer);
    }

    /// <summary>Writes files into the temp folder through <see cref="CreateFile"/>; failures name the output file.</summary>
    sealed class FolderWriter(CheckpointExporter owner, string folder, string output, List<string> written)
    {
        public void Write(string name, Action<Stream> fill)
        {
            try
            {
                using (Stream stream = owner.CreateFile(Path.Combine(folder, name)))
                {
                    fill(stream);
                    if (stream is FileStream file) file.Flush(flushToDisk: true);
                    else stream.Flush();
                }
                written.Add(name);
            }
            catch (IOException e) when (e is not ExportException)
            {
                throw new ExportException(Path.Combine(output, name), $"write failed: {e.Message}", e);
            }
        }
    }
}
