namespace E3.Tests.Reference;

/// <summary>
/// A checkpoint folder the reference cannot read: the message names the file, the field and the offending value,
/// so that a bad test model or a truncated download is diagnosed without a debugger.
/// </summary>
public sealed class ReferenceCheckpointException : Exception
{
    /// <summary>Creates the error for <paramref name="file"/>; <paramref name="field"/> is the JSON field or tensor name at fault.</summary>
    public ReferenceCheckpointException(string file, string field, string problem)
        : base($"{file}: '{field}' {problem}")
    {
        File = file;
        Field = field;
    }

    /// <summary>The file that holds the bad value.</summary>
    public string File { get; }

    /// <summary>The JSON field or tensor name at fault.</summary>
    public string Field { get; }
}
