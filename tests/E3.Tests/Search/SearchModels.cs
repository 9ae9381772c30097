using E3.Model;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Tests.Support;

namespace E3.Tests.Search;

/// <summary>Small random models and token files for the search tests.</summary>
internal static class SearchModels
{
    public const int Vocab = 256;

    /// <summary>
    /// A random Qwen3 model whose layers in <paramref name="weakLayers"/> are nearly the identity: their o_proj and
    /// down_proj (the only paths from the layer into the residual stream) are scaled by 1e-3, so dropping one changes
    /// the output by ~1e-3 of what dropping any other layer does. InitStd 0.15 makes the other layers strong.
    /// </summary>
    public static string Write(TempDir dir, string name, int layers, int[] weakLayers, int seed = 3)
    {
        string folder = dir[name];
        RandomModel.Write(new RandomModelSpec { Layers = layers, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Intermediate = 128, Vocab = Vocab, Seed = seed, InitStd = 0.15f }, folder);
        if (weakLayers.Length == 0) return folder;
        string file = Path.Combine(folder, SafeTensorsCheckpoint.SingleFileName);
        var tensors = new List<TensorToWrite>();
        using (var checkpoint = SafeTensorsCheckpoint.Open(folder))
            foreach (var tensorName in checkpoint.Names.Order(StringComparer.Ordinal))
            {
                var values = checkpoint.ReadFloat32(tensorName);
                if (weakLayers.Any(l => tensorName == WeightNames.Layer(l, WeightNames.OProj) + ".weight" || tensorName == WeightNames.Layer(l, WeightNames.DownProj) + ".weight"))
                    for (int i = 0; i < values.Length; i++) values[i] *= 1e-3f;
                var bytes = new byte[values.Length * sizeof(float)];
                Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
                tensors.Add(new TensorToWrite(tensorName, SafeTensorsDType.F32, checkpoint.Get(tensorName).Shape.ToArray(), bytes));
            }
        SafeTensorsWriter.Write(file, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return folder;
    }

    /// <summary>Seeded uniform token ids as a raw uint32 .bin file.</summary>
    public static (string Path, int[] Ids) Tokens(TempDir dir, string name, int count, int seed = 9)
    {
        var random = new Random(seed);
        var ids = Enumerable.Range(0, count).Select(_ => random.Next(Vocab)).ToArray();
        var bytes = new byte[count * 4];
        for (int i = 0; i < count; i++) BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), (uint)ids[i]);
        File.WriteAllBytes(dir[name], bytes);
        return (dir[name], ids);
    }

    /// <summary>
    /// Mean per-token KL(p_full ‖ p_masked) in double over sequences of <paramref name="length"/> tokens, from the
    /// inference forward (<see cref="DecoderModel.Forward"/>), independent of the training path the search uses.
    /// </summary>
    public static double MeanKl(DecoderModel model, int[] ids, int length, LayerMask mask)
    {
        int vocab = model.Config.VocabSize;
        double total = 0;
        long count = 0;
        for (int start = 0; start + length <= ids.Length; start += length)
        {
            var full = model.Forward(ids.AsSpan(start, length));
            var masked = model.Forward(ids.AsSpan(start, length), mask);
            for (int t = 0; t < length; t++)
            {
                var p = LogSoftmax(full.AsSpan(t * vocab, vocab));
                var q = LogSoftmax(masked.AsSpan(t * vocab, vocab));
                for (int v = 0; v < vocab; v++) total += Math.Exp(p[v]) * (p[v] - q[v]);
                count++;
            }
        }
        return total / count;
    }

    private static double[] LogSoftmax(ReadOnlySpan<float> row)
    {
        double max = double.NegativeInfinity;
        foreach (var z in row) max = Math.Max(max, z);
        double sum = 0;
        foreach (var z in row) sum += Math.Exp(z - max);
        double lse = max + Math.Log(sum);
        var result = new double[row.Length];
        for (int i = 0; i < row.Length; i++) result[i] = row[i] - lse;
        return result;
    }
}
