using E3.Interop.IO;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace E3.Interop.Kernels;

/// <summary>How a cache lookup went.</summary>
internal enum KernelCacheOutcome
{
    /// <summary>No cache in use.</summary>
    Disabled,

    /// <summary>No entry; compiled and stored.</summary>
    Miss,

    /// <summary>A valid entry was used.</summary>
    Hit,

    /// <summary>An entry existed but failed its checksum or format check; compiled again and overwritten.</summary>
    Corrupt,
}

/// <summary>
/// Compiled kernel images on disk, one file per <see cref="KernelCacheKey"/>. Entry layout (little-endian):
/// magic <c>E3KC</c>, int32 format version, 32-byte key hash, int32 log length, int32 image length,
/// 32-byte SHA-256 of (log bytes + image bytes), log (UTF-8), image. Writes go to a unique temp file
/// in the same folder and are renamed over the entry, so readers never see a half-written file.
/// </summary>
internal sealed class KernelCache
{
    /// <summary>The environment variable that moves the cache.</summary>
    public const string DirectoryVariable = "E3_KERNEL_CACHE";

    private const int FormatVersion = 1;
    private const int HeaderBytes = 4 + 4 + 32 + 4 + 4 + 32;
    private static ReadOnlySpan<byte> Magic => "E3KC"u8;

    /// <summary>Uses <paramref name="directory"/>, creating it on first write.</summary>
    public KernelCache(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = directory;
    }

    /// <summary>The folder holding the entries.</summary>
    public string Directory { get; }

    /// <summary><c>$E3_KERNEL_CACHE</c>, else <c>$XDG_CACHE_HOME/e3/kernels</c>, else <c>~/.cache/e3/kernels</c>.</summary>
    public static string DefaultDirectory()
    {
        if (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } explicitDirectory)
            return explicitDirectory;
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg)
            return Path.Combine(xdg, "e3", "kernels");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "e3", "kernels");
    }

    /// <summary>Where the entry for <paramref name="key"/> lives.</summary>
    internal string PathFor(KernelCacheKey key) => Path.Combine(Directory, key.FileName);

    /// <summary>
    /// Reads the entry for <paramref name="key"/>: <see cref="KernelCacheOutcome.Hit"/> with its image and log,
    /// <see cref="KernelCacheOutcome.Miss"/> when absent, <see cref="KernelCacheOutcome.Corrupt"/> when present
    /// but unreadable, truncated, for another key, or failing its checksum.
    /// </summary>
    internal KernelCacheOutcome TryRead(KernelCacheKey key, out byte[] image, out string log)
    {
        image = [];
        log = "";
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(PathFor(key));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return KernelCacheOutcome.Miss;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // An entry that cannot be read (no permission, a folder in its place) is rebuilt like a damaged one: the
            // cache only saves time and must never stop a kernel from loading.
            return KernelCacheOutcome.Corrupt;
        }
        if (bytes.Length < HeaderBytes || !bytes.AsSpan(0, 4).SequenceEqual(Magic)
            || BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4)) != FormatVersion
            || !bytes.AsSpan(8, 32).SequenceEqual(Convert.FromHexString(key.Hash)))
            return KernelCacheOutcome.Corrupt;
        int logLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(40));
        int imageLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(44));
        if (logLength < 0 || imageLength < 0 || (long)HeaderBytes + logLength + imageLength != bytes.Length)
            return KernelCacheOutcome.Corrupt;
        var payload = bytes.AsSpan(HeaderBytes);
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(bytes.AsSpan(48, 32)))
            return KernelCacheOutcome.Corrupt;
        log = Encoding.UTF8.GetString(payload[..logLength]);
        image = payload[logLength..].ToArray();
        return KernelCacheOutcome.Hit;
    }

    /// <summary>Stores <paramref name="image"/> and its compile <paramref name="log"/> atomically.</summary>
    internal void Write(KernelCacheKey key, ReadOnlySpan<byte> image, string log)
    {
        var logBytes = Encoding.UTF8.GetBytes(log);
        var entry = new byte[HeaderBytes + logBytes.Length + image.Length];
        Magic.CopyTo(entry);
        BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(4), FormatVersion);
        Convert.FromHexString(key.Hash).CopyTo(entry.AsSpan(8));
        BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(40), logBytes.Length);
        BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(44), image.Length);
        logBytes.CopyTo(entry.AsSpan(HeaderBytes));
        image.CopyTo(entry.AsSpan(HeaderBytes + logBytes.Length));
        SHA256.HashData(entry.AsSpan(HeaderBytes), entry.AsSpan(48, 32));

        System.IO.Directory.CreateDirectory(Directory);
        using var file = AtomicFile.Create(PathFor(key));
        file.Stream.Write(entry);
        file.Commit();
    }
}
