using System.Runtime.InteropServices;
using E3.Backends;
using E3.Backends.Numerics;
using E3.Model.Decoder;
using E3.Model.IO;
using E3.Model.Training;

namespace E3.Pruning.Distill;

/// <summary>
/// Writes a trained model as a Hugging Face folder: every weight in its dtype (bf16 stays bf16, fp32 stays fp32)
/// in model.safetensors, with the source folder's config.json, generation_config.json and tokenizer files copied
/// (other files, such as a README, are not the model's and stay behind). The folder is built under a temp name next to the target and renamed into
/// place, so the target is either absent, the old folder, or complete.
/// </summary>
internal static class ModelFolderWriter
{
    /// <param name="model">The trained model (its current weights are written).</param>
    /// <param name="sourceFolder">The folder the model was loaded from; its non-weight files are copied.</param>
    /// <param name="target">The output folder (see <see cref="OutputFolder.Check"/>).</param>
    /// <param name="extraFiles">More files to copy in (e.g. mask.json), by name in the output.</param>
    /// <param name="replace">Whether an existing, non-empty <paramref name="target"/> may be replaced.</param>
    /// <param name="inputs">What the run read besides <paramref name="sourceFolder"/>, which the target may not hold.</param>
    public static void Write(DecoderModel model, string sourceFolder, string target, IReadOnlyDictionary<string, string>? extraFiles = null,
        bool replace = false, IEnumerable<string?>? inputs = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        string full = OutputFolder.Check(target, replace, [sourceFolder, .. extraFiles?.Values ?? [], .. inputs ?? []]);
        string parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"--out: {target} has no parent folder");
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(temp)) Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        try
        {
            foreach (string file in Directory.GetFiles(sourceFolder))
            {
                string name = Path.GetFileName(file);
                if (IsModelSideFile(name)) File.Copy(file, Path.Combine(temp, name));
            }
            foreach (var (name, path) in extraFiles ?? new Dictionary<string, string>())
                File.Copy(path, Path.Combine(temp, name), overwrite: true);
            SafeTensorsWriter.Write(Path.Combine(temp, SafeTensorsCheckpoint.SingleFileName), Tensors(model));
            string? old = null;
            if (Directory.Exists(full))
            {
                old = Path.Combine(parent, $".{Path.GetFileName(full)}.old-{Environment.ProcessId}");
                Directory.Move(full, old);
            }
            Directory.Move(temp, full);
            if (old != null) Directory.Delete(old, true);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, true);
        }
    }

    /// <summary>The files of an HF folder that belong with the weights: config, generation config and tokenizer.</summary>
    static bool IsModelSideFile(string name) =>
        name is "config.json" or "generation_config.json" or "special_tokens_map.json" or "vocab.json" or "merges.txt" or "added_tokens.json"
        || name.StartsWith("tokenizer", StringComparison.Ordinal) || name.StartsWith("chat_template", StringComparison.Ordinal);

    static IEnumerable<TensorToWrite> Tensors(DecoderModel model)
    {
        var b = model.Backend;
        var shapes = WeightNames.Expected(model.Config).ToDictionary(e => e.Name, e => e.Shape);
        foreach (var (name, weight) in model.Weights.ByName())
        {
            var values = new float[weight.ElementCount];
            b.Download(weight, values);
            long[] shape = shapes[name];
            if (weight.DType == DType.BF16)
            {
                var bits = new ushort[values.Length];
                BFloat16.FromSingle(values, bits);
                yield return new TensorToWrite(name, SafeTensorsDType.BF16, shape, MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
            }
            else
                yield return new TensorToWrite(name, SafeTensorsDType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        }
    }
}
