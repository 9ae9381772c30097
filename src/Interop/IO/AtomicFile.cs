namespace E3.Interop.IO;

/// <summary>
/// Writes a file so that readers see either the old file or the complete new one: the bytes go to a temp file
/// in the same folder, which <see cref="Commit"/> flushes and renames over the target. Disposing without a
/// commit (an exception on the way) deletes the temp file and leaves the target untouched.
/// </summary>
internal sealed class AtomicFile : IDisposable
{
    readonly FileStream _stream;
    bool _committed;

    AtomicFile(string path, string tempPath, FileStream stream)
    {
        TargetPath = path;
        TempPath = tempPath;
        _stream = stream;
    }

    /// <summary>The file that exists after <see cref="Commit"/>.</summary>
    public string TargetPath { get; }

    /// <summary>The temp file being written: <c>path + ".tmp-" + random</c>.</summary>
    public string TempPath { get; }

    /// <summary>Where to write the new contents.</summary>
    public Stream Stream => _stream;

    /// <summary>Starts writing <paramref name="path"/>; its folder must exist.</summary>
    public static AtomicFile Create(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string temp = path + ".tmp-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));
        var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        return new AtomicFile(path, temp, stream);
    }

    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> atomically.</summary>
    public static void WriteAllText(string path, string text)
    {
        using var file = Create(path);
        file.Stream.Write(System.Text.Encoding.UTF8.GetBytes(text));
        file.Commit();
    }

    /// <summary>Flushes the data to disk and renames the temp file over the target.</summary>
    public void Commit()
    {
        if (_committed) throw new InvalidOperationException($"{TargetPath}: already committed");
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
        File.Move(TempPath, TargetPath, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        if (_committed) return;
        _stream.Dispose();
        try
        {
            File.Delete(TempPath);
        }
        catch (IOException)
        {
            // Nothing more can be done; the original exception is the one worth reporting.
        }
    }
}
