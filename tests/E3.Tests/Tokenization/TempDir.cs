namespace E3.Tests.Tokenization;

/// <summary>A fresh folder under the system temp folder, deleted with its contents on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("e3-tok-test-").FullName;
    public DateTime Created { get; } = DateTime.UtcNow;

    public string Write(string name, string content)
    {
        string file = System.IO.Path.Combine(Path, name);
        File.WriteAllText(file, content);
        return file;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
