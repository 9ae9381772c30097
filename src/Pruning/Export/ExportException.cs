namespace E3.Pruning.Export;

/// <summary>An export that cannot be done or did not complete; names the file (or folder) at fault.</summary>
public sealed class ExportException : IOException
{
    /// <summary>A problem with <paramref name="path"/>; <paramref name="inner"/> is the exception behind it, when there is one.</summary>
    public ExportException(string path, string problem, Exception? inner = null) : base($"{path}: {problem}", inner)
    {
        Path = path;
    }

    /// <summary>The file or folder the problem is about.</summary>
    public string Path { get; }
}
