namespace E3.Model.IO;

/// <summary>A token id file that cannot be read as ids, or holds an id outside the vocabulary.</summary>
public sealed class TokenFileException(string file, string problem) : Exception($"{file}: {problem}")
{
    /// <summary>The token file at fault, as the caller named it.</summary>
    public string File { get; } = file;
}
