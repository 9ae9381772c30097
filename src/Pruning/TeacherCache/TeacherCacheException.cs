namespace E3.Pruning.TeacherCache;

/// <summary>A teacher cache file that cannot be used: names the file, the field and the offending value.</summary>
public sealed class TeacherCacheException(string path, string field, string message)
    : Exception($"{path}: {field}: {message}")
{
    /// <summary>The cache file.</summary>
    public string Path { get; } = path;

    /// <summary>The header or shard field that is wrong (e.g. "magic", "K", "shard 3 checksum").</summary>
    public string Field { get; } = field;
}
