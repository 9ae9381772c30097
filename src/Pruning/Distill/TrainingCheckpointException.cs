namespace E3.Pruning.Distill;

/// <summary>A training checkpoint that cannot be resumed from: names the file, the field and the problem.</summary>
internal sealed class TrainingCheckpointException(string file, string field, string problem)
    : Exception($"{file}: {field}: {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
