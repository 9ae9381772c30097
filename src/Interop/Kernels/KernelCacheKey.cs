using System.Security.Cryptography;
using System.Text;

namespace E3.Interop.Kernels;

/// <summary>
/// Identifies one compiled image: SHA-256 over the kernel source, every header (name and text), the NVRTC
/// options, the target architecture and the NVRTC version. Any change to any of them is a different key.
/// </summary>
internal readonly record struct KernelCacheKey(string Name, string Arch, string Hash)
{
    /// <summary>Computes the key for compiling <paramref name="source"/> with <paramref name="options"/>.</summary>
    public static KernelCacheKey Compute(KernelSource source, IReadOnlyDictionary<string, string> headers, IReadOnlyList<string> options,
        KernelTarget target, Version nvrtcVersion)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(headers);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(nvrtcVersion);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        // Every field is length-prefixed so that no two different inputs serialise to the same bytes.
        void Field(string value)
        {
            var bytes = Encoding.UTF8.GetBytes(value);
            Span<byte> length = stackalloc byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
            hash.AppendData(length);
            hash.AppendData(bytes);
        }
        Field("e3-kernel-cache-key-v1");
        Field(source.FileName);
        Field(source.Text);
        foreach (var header in headers.OrderBy(h => h.Key, StringComparer.Ordinal))
        {
            Field(header.Key);
            Field(header.Value);
        }
        foreach (var option in options)
            Field(option);
        Field(target.Arch);
        Field(nvrtcVersion.ToString());
        return new KernelCacheKey(source.Name, target.Arch, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }

    /// <summary>The entry's file name: readable prefix, full hash.</summary>
    public string FileName => $"{Name}.{Arch}.{Hash}.e3k";
}
