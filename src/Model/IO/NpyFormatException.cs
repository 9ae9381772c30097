namespace E3.Model.IO;

/// <summary>A .npy file that breaks the format or holds what E3 does not read; the message names the file and the values.</summary>
public sealed class NpyFormatException(string file, string problem) : Exception($"{file}: {problem}")
{
    /// <summary>The .npy file.</summary>
    public string File { get; } = file;
}
