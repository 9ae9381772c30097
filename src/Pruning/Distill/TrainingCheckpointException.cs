namespace E3.Pruning.Distill;

/// <summary>A training checkpoint that cannot be resumed from: names the file, the field and the problem.</summary>
public sealed class TrainingCheckpointException(string file, string field, string problem)
    : Exception($"{file}: {field}: {problem}")
{
    /// <summary>The checkpoint file (or folder) that cannot be resumed from.</summary>
    public string File { get; } = file;
    /// <summary>What is wrong with it: the fingerprint of another run, a missing file, the optimizer state, the step.</summary>
    public string Field { get; } = field;
}
