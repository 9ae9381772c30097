namespace E3.Model.IO;

/// <summary>
/// Checks a folder that a command writes as a whole, replacing it when it exists, before any work is done: it must not be
/// a file; an existing, non-empty one is replaced only when the caller allows it (--force); and it must not hold the
/// command's own inputs or the working directory, which replacing it would delete.
/// </summary>
internal static class OutputFolder
{
    /// <summary>Checks <paramref name="target"/> and returns its full path.</summary>
    /// <param name="target">The folder as the user gave it.</param>
    /// <param name="replace">Whether an existing, non-empty folder may be replaced.</param>
    /// <param name="inputs">Files and folders the command reads (null entries are ignored).</param>
    /// <param name="option">The option that named the folder, for errors.</param>
    public static string Check(string target, bool replace, IEnumerable<string?> inputs, string option = "--out")
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (string.IsNullOrWhiteSpace(target)) throw new ArgumentException($"{option}: an empty path names no folder");
        string full = Normalize(target);
        if (File.Exists(full)) throw new IOException($"{option}: {full} is a file, not a folder");
        if (!Directory.Exists(full)) return full;
        if (!replace && Directory.EnumerateFileSystemEntries(full).Any())
            throw new IOException($"{option}: {full} exists and is not empty; choose another folder or pass --force to replace it");
        RefuseIfItHolds(full, inputs, option);
        return full;
    }

    /// <summary>Refuses an existing <paramref name="folder"/> that is, or holds, one of <paramref name="inputs"/> or the working directory.</summary>
    public static void RefuseIfItHolds(string folder, IEnumerable<string?> inputs, string option = "--out")
    {
        string full = Normalize(folder);
        if (!Directory.Exists(full)) return;
        foreach (var input in inputs)
            if (!string.IsNullOrEmpty(input) && Holds(full, Normalize(input)))
                throw new IOException($"{option}: {full} holds {Normalize(input)}, which this command reads; replacing the folder would delete it");
        if (Holds(full, Normalize(Environment.CurrentDirectory)))
            throw new IOException($"{option}: {full} holds the working directory; replacing it would delete it");
    }

    static string Normalize(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));

    static bool Holds(string folder, string path) =>
        path == folder || path.StartsWith(folder + Path.DirectorySeparatorChar, StringComparison.Ordinal);
}
