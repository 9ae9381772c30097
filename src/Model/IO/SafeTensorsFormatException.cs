namespace E3.Model.IO;

/// <summary>
/// A safetensors file, checkpoint folder or shard index that breaks the format or lacks what was asked of it.
/// The message names the file, the tensor (when one is involved) and the offending values.
/// </summary>
public sealed class SafeTensorsFormatException : Exception
{
    /// <summary>A problem with <paramref name="file"/>, or with <paramref name="tensor"/> in it when not null.</summary>
    public SafeTensorsFormatException(string file, string? tensor, string problem)
        : base(tensor == null ? $"{file}: {problem}" : $"{file}: tensor '{tensor}': {problem}")
    {
        File = file;
        Tensor = tensor;
    }

    /// <summary>The file (or folder) at fault, as the caller named it.</summary>
    public string File { get; }

    /// <summary>The tensor at fault, or null for a problem with the file as a whole.</summary>
    public string? Tensor { get; }
}
