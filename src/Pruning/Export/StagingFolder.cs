namespace E3.Pruning.Export;

/// <summary>
/// A hidden temp folder next to the output folder. Everything is written there; <see cref="Commit"/> renames it
/// into place, so the output folder appears complete or not at all. Disposing without a commit deletes it.
/// </summary>
internal sealed class StagingFolder : IDisposable
{
    bool _committed;

    StagingFolder(string target, string path)
    {
        TargetPath = target;
        Path = path;
    }

    /// <summary>The folder that exists after <see cref="Commit"/>.</summary>
    public string TargetPath { get; }

    /// <summary>The temp folder being filled.</summary>
    public string Path { get; }

    public static StagingFolder Create(string target)
    {
        string parent = System.IO.Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        string path = System.IO.Path.Combine(parent, $".{System.IO.Path.GetFileName(target)}.export-tmp-{RandomSuffix()}");
        Directory.CreateDirectory(path);
        return new StagingFolder(target, path);
    }

    /// <summary>
    /// Renames the temp folder to the target. An existing target (allowed only with overwrite, checked by the caller)
    /// is first moved aside and deleted after the rename, so at every moment one complete folder sits at the target
    /// path or is about to; should the rename fail, the old folder is put back.
    /// </summary>
    public void Commit()
    {
        string? aside = null;
        if (Directory.Exists(TargetPath) || File.Exists(TargetPath))
        {
            aside = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(TargetPath)!, $".{System.IO.Path.GetFileName(TargetPath)}.export-old-{RandomSuffix()}");
            if (Directory.Exists(TargetPath)) Directory.Move(TargetPath, aside);
            else File.Move(TargetPath, aside);
        }
        try
        {
            Directory.Move(Path, TargetPath);
        }
        catch
        {
            if (aside != null) MoveBack(aside);
            throw;
        }
        _committed = true;
        if (aside != null)
        {
            if (Directory.Exists(aside)) Directory.Delete(aside, recursive: true);
            else File.Delete(aside);
        }
    }

    void MoveBack(string aside)
    {
        if (Directory.Exists(aside)) Directory.Move(aside, TargetPath);
        else File.Move(aside, TargetPath);
    }

    static string RandomSuffix() => Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(6));

    public void Dispose()
    {
        if (_committed || !Directory.Exists(Path)) return;
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // The failure that brought us here is the one worth reporting.
        }
    }
}
