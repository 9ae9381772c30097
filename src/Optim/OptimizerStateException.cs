namespace E3.Optim;

/// <summary>An optimizer state file that is missing, truncated, or belongs to different parameters.</summary>
public sealed class OptimizerStateException(string file, string field, string problem)
    : Exception($"{file}: {field}: {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
