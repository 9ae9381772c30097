using System.Security.Cryptography;
using System.Text;

namespace E3.Model.IO;

/// <summary>
/// A cheap fingerprint of a checkpoint's weights: SHA-256 over every tensor's name, dtype, shape and the first and last
/// 4 KiB of its bytes, in name order. Two models of one config trained differently (or drawn from other seeds) differ
/// in those bytes; reading them costs a few KiB a tensor, not the whole model.
/// </summary>
internal static class CheckpointFingerprint
{
    const int EdgeBytes = 4096;

    /// <summary>The fingerprint of the checkpoint at <paramref name="path"/> (a folder or a .safetensors file), as 64 hex digits.</summary>
    public static string Of(string path)
    {
        using var checkpoint = SafeTensorsCheckpoint.Open(path);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (string name in checkpoint.Names.Order(StringComparer.Ordinal))
        {
            var entry = checkpoint.Get(name);
            sha.AppendData(Encoding.UTF8.GetBytes($"{name}|{entry.DType}|{string.Join(",", entry.Shape)}|"));
            var bytes = checkpoint.GetBytes(name);
            sha.AppendData(bytes[..Math.Min(EdgeBytes, bytes.Length)]);
            sha.AppendData(bytes[Math.Max(0, bytes.Length - EdgeBytes)..]);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }
}
