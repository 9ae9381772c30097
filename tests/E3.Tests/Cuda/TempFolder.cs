namespace E3.Tests.Cuda;

/// <summary>A fresh temporary folder removed on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "e3-cuda-tests-" + Guid.NewGuid().ToString("N"));

    public string Make(string relative)
    {
        var full = System.IO.Path.Combine(Path, relative);
        Directory.CreateDirectory(full);
        return full;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
