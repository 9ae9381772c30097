namespace E3.Tests.Support;

/// <summary>A fresh folder under /tmp, deleted on Dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string prefix = "e3-test")
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, true); } catch (DirectoryNotFoundException) { }
    }
}
