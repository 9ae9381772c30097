using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace E3.Pruning.TeacherCache;

/// <summary>Where one verified shard lies in the file.</summary>
/// <param name="Offset">Byte offset of the shard's magic.</param>
/// <param name="Tokens">Token positions it holds.</param>
/// <param name="FirstToken">Index of its first position in the token data.</param>
internal readonly record struct ShardInfo(long Offset, int Tokens, long FirstToken);

/// <summary>Encoding, decoding and verification of shards (layout in <see cref="TeacherCacheHeader"/>).</summary>
internal static class ShardLayout
{
    public const int PrefixBytes = 16;
    private static ReadOnlySpan<byte> Magic => "SHRD"u8;

    public static long PayloadBytes(int tokens, int k) => (long)tokens * k * 8;

    public static long TotalBytes(int tokens, int k) => PrefixBytes + PayloadBytes(tokens, k) + 4;

    /// <summary>The shard's bytes, checksum included.</summary>
    public static byte[] Encode(ReadOnlySpan<int> indices, ReadOnlySpan<float> logProbs, int tokens, long firstToken, int k)
    {
        var bytes = new byte[TotalBytes(tokens, k)];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteInt32LittleEndian(span[4..], tokens);
        BinaryPrimitives.WriteInt64LittleEndian(span[8..], firstToken);
        int n = tokens * k;
        MemoryMarshal.AsBytes(indices[..n]).CopyTo(span[PrefixBytes..]);
        MemoryMarshal.AsBytes(logProbs[..n]).CopyTo(span[(PrefixBytes + 4 * n)..]);
        BinaryPrimitives.WriteUInt32LittleEndian(span[^4..], Crc32.HashToUInt32(span[..^4]));
        return bytes;
    }

    /// <summary>
    /// Verifies every shard after the header. A shard cut short by the end of the file is an error unless
    /// <paramref name="tolerateTruncatedTail"/> (resuming after an interruption), in which case scanning stops
    /// there and <paramref name="validEnd"/> is where it starts.
    /// </summary>
    public static List<ShardInfo> Scan(FileStream stream, TeacherCacheHeader header, string path, bool tolerateTruncatedTail, out long validEnd)
    {
        var shards = new List<ShardInfo>();
        long next = 0;
        Span<byte> prefix = stackalloc byte[PrefixBytes];
        while (true)
        {
            long offset = stream.Position;
            validEnd = offset;
            if (offset == stream.Length) return shards;
            string field = $"shard {shards.Count} (byte {offset})";
            int got = TeacherCacheHeader.ReadFully(stream, prefix);
            if (got < PrefixBytes)
            {
                if (tolerateTruncatedTail) return shards;
                throw new TeacherCacheException(path, field, $"truncated: {got} of the {PrefixBytes} prefix bytes present");
            }
            if (!prefix[..4].SequenceEqual(Magic))
                throw new TeacherCacheException(path, field, "shard magic is not 'SHRD'");
            int tokens = BinaryPrimitives.ReadInt32LittleEndian(prefix[4..]);
            long first = BinaryPrimitives.ReadInt64LittleEndian(prefix[8..]);
            if (tokens < 1 || tokens > header.SequenceLength)
                throw new TeacherCacheException(path, field + " tokens", $"{tokens} is outside [1, {header.SequenceLength}]");
            if (first != next)
                throw new TeacherCacheException(path, field + " first token", $"{first}, expected {next} (shards must be contiguous)");
            long size = TotalBytes(tokens, header.K);
            if (offset + size > stream.Length)
            {
                if (tolerateTruncatedTail) return shards;
                throw new TeacherCacheException(path, field, $"truncated: needs {size} bytes, the file ends after {stream.Length - offset}");
            }
            var body = new byte[size - PrefixBytes];
            TeacherCacheHeader.ReadFully(stream, body);
            var crc = new Crc32();
            crc.Append(prefix);
            crc.Append(body.AsSpan(0, body.Length - 4));
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(body.Length - 4));
            uint computed = crc.GetCurrentHashAsUInt32();
            if (stored != computed)
                throw new TeacherCacheException(path, field + " checksum", $"stored 0x{stored:x8}, computed 0x{computed:x8}");
            CheckEntries(body, tokens, header, path, field);
            shards.Add(new ShardInfo(offset, tokens, first));
            next += tokens;
            if (next > header.DataTokens)
                throw new TeacherCacheException(path, field, $"shards cover {next} tokens, more than the {header.DataTokens} of the data");
        }
    }

    /// <summary>Copies one shard's entries into the given spans (length tokens·K each).</summary>
    public static void Decode(ReadOnlySpan<byte> body, int tokens, int k, Span<int> indices, Span<float> logProbs)
    {
        int n = tokens * k;
        body[..(4 * n)].CopyTo(MemoryMarshal.AsBytes(indices[..n]));
        body.Slice(4 * n, 4 * n).CopyTo(MemoryMarshal.AsBytes(logProbs[..n]));
    }

    // A checksum only proves the bytes are the ones written; the values must also make sense for the loss.
    private static void CheckEntries(byte[] body, int tokens, TeacherCacheHeader header, string path, string field)
    {
        int n = tokens * header.K;
        var indices = MemoryMarshal.Cast<byte, int>(body.AsSpan(0, 4 * n));
        var logProbs = MemoryMarshal.Cast<byte, float>(body.AsSpan(4 * n, 4 * n));
        for (int i = 0; i < n; i++)
        {
            if ((uint)indices[i] >= (uint)header.Vocab)
                throw new TeacherCacheException(path, field + " index", $"entry {i} is {indices[i]}, outside [0, {header.Vocab})");
            if (!(logProbs[i] <= 0))
                throw new TeacherCacheException(path, field + " log-probability", $"entry {i} is {logProbs[i]}, not <= 0");
        }
    }
}
