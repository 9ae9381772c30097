namespace E3.Optim;

/// <summary>An optimizer state file that is missing, truncated, or belongs to different parameters.</summary>
public sealed class OptimizerStateException(string file, string field, string problem)
    : Exception($"{file}: {field}: {problem}")
{
    /// <summary>The state file at fault, as the caller named it.</summary>
    public string File { get; } = file;
    /// <summary>The part of the file at fault: a header field such as magic or version, or a parameter entry.</summary>
    public string Field { get; } = field;
}
