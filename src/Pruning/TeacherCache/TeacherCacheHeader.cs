using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace E3.Pruning.TeacherCache;

/// <summary>Element type of the stored log-probabilities.</summary>
public enum TeacherCacheDType : uint
{
    /// <summary>Little-endian IEEE fp32.</summary>
    Float32 = 1,
}

/// <summary>
/// The header of a top-K teacher cache. On disk (little-endian), followed by append-only shards:
/// <code>
/// "E3TOPKC\0"  magic, 8 bytes
/// u32 version (1) | u32 K | u32 vocab | u32 dtype (1 = fp32) | u32 sequence length
/// u64 data tokens (length of the token file the cache covers) | u32 CRC-32 of the token ids (as int32 LE)
/// u16 model-id length | UTF-8 model id (at most 1024 bytes)
/// u32 CRC-32 of every header byte before it
/// shard*: "SHRD" | u32 tokens | u64 first token | int32 indices [tokens, K] | fp32 log-probs [tokens, K]
///         | u32 CRC-32 of the shard bytes before it
/// </code>
/// Log-probabilities are full-vocabulary log-softmax values at temperature 1, the K entries of a token in
/// descending order.
/// </summary>
public sealed record TeacherCacheHeader(int K, int Vocab, TeacherCacheDType DType, string ModelId, int SequenceLength, long DataTokens, uint DataChecksum)
{
    /// <summary>The format version this code reads and writes.</summary>
    public const uint CurrentVersion = 1;

    /// <summary>Longest model id accepted, in UTF-8 bytes.</summary>
    public const int MaxModelIdBytes = 1024;

    internal static ReadOnlySpan<byte> Magic => "E3TOPKC\0"u8;

    /// <summary>The serialised header, checksum included.</summary>
    internal byte[] ToBytes()
    {
        Validate("header");
        var id = Encoding.UTF8.GetBytes(ModelId);
        var bytes = new byte[8 + 5 * 4 + 8 + 4 + 2 + id.Length + 4];
        var span = bytes.AsSpan();
        Magic.CopyTo(span);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], CurrentVersion);
        BinaryPrimitives.WriteInt32LittleEndian(span[12..], K);
        BinaryPrimitives.WriteInt32LittleEndian(span[16..], Vocab);
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], (uint)DType);
        BinaryPrimitives.WriteInt32LittleEndian(span[24..], SequenceLength);
        BinaryPrimitives.WriteInt64LittleEndian(span[28..], DataTokens);
        BinaryPrimitives.WriteUInt32LittleEndian(span[36..], DataChecksum);
        BinaryPrimitives.WriteUInt16LittleEndian(span[40..], (ushort)id.Length);
        id.CopyTo(span[42..]);
        BinaryPrimitives.WriteUInt32LittleEndian(span[^4..], Crc32.HashToUInt32(span[..^4]));
        return bytes;
    }

    /// <summary>Reads and verifies the header at the start of <paramref name="stream"/>; leaves the stream after it.</summary>
    internal static TeacherCacheHeader Read(Stream stream, string path)
    {
        Span<byte> fixedPart = stackalloc byte[42];
        if (ReadFully(stream, fixedPart) < fixedPart.Length)
            throw new TeacherCacheException(path, "header", $"truncated: the file has {stream.Length} bytes, fewer than the 42-byte fixed header");
        if (!fixedPart[..8].SequenceEqual(Magic))
            throw new TeacherCacheException(path, "magic", $"'{Encoding.ASCII.GetString(fixedPart[..8]).Replace("\0", "\\0")}' is not a teacher cache (expected 'E3TOPKC\\0')");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(fixedPart[8..]);
        if (version != CurrentVersion)
            throw new TeacherCacheException(path, "version", $"{version} is not supported (this build reads version {CurrentVersion})");
        int idLength = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart[40..]);
        if (idLength > MaxModelIdBytes)
            throw new TeacherCacheException(path, "model id length", $"{idLength} bytes exceeds {MaxModelIdBytes}");
        var rest = new byte[idLength + 4];
        if (ReadFully(stream, rest) < rest.Length)
            throw new TeacherCacheException(path, "header", $"truncated: the model id and checksum need {rest.Length} bytes after byte 42");
        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(rest.AsSpan(idLength));
        var crc = new Crc32();
        crc.Append(fixedPart);
        crc.Append(rest.AsSpan(0, idLength));
        uint computed = crc.GetCurrentHashAsUInt32();
        if (stored != computed)
            throw new TeacherCacheException(path, "header checksum", $"stored 0x{stored:x8}, computed 0x{computed:x8}");
        var header = new TeacherCacheHeader(
            BinaryPrimitives.ReadInt32LittleEndian(fixedPart[12..]),
            BinaryPrimitives.ReadInt32LittleEndian(fixedPart[16..]),
            (TeacherCacheDType)BinaryPrimitives.ReadUInt32LittleEndian(fixedPart[20..]),
            Encoding.UTF8.GetString(rest, 0, idLength),
            BinaryPrimitives.ReadInt32LittleEndian(fixedPart[24..]),
            BinaryPrimitives.ReadInt64LittleEndian(fixedPart[28..]),
            BinaryPrimitives.ReadUInt32LittleEndian(fixedPart[36..]));
        header.Validate(path);
        return header;
    }

    /// <summary>
    /// The id a cache records for its teacher: the model folder's name, for people, then the first 16 hex digits of its
    /// config.json hash (<c>ModelConfig.Hash</c>) and of its weights' <see cref="E3.Model.IO.CheckpointFingerprint"/>.
    /// </summary>
    public static string ModelIdOf(string folderName, string configHash, string weightsFingerprint) =>
        $"{folderName}#{configHash[..Math.Min(16, configHash.Length)]}#{weightsFingerprint[..Math.Min(16, weightsFingerprint.Length)]}";

    /// <summary>
    /// <see cref="ModelIdOf(string, string, string)"/> of the Hugging Face model folder <paramref name="modelDirectory"/>:
    /// what a cache made from that model records, and what a reader checks it against (<see cref="IsForModel"/>).
    /// </summary>
    public static string ModelIdOf(string modelDirectory) =>
        ModelIdOf(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory))),
            E3.Model.ModelConfig.Load(modelDirectory).Hash(), E3.Model.IO.CheckpointFingerprint.Of(modelDirectory));

    /// <summary>
    /// Whether the cache was made for the model whose id (<see cref="ModelIdOf(string, string, string)"/>) is <paramref name="modelId"/>: the
    /// same config and weights, whatever the folder is called now. Another config, or other weights of the same
    /// config, are another teacher.
    /// </summary>
    public bool IsForModel(string modelId) => Fingerprints(ModelId) == Fingerprints(modelId);

    static string Fingerprints(string id) => id.IndexOf('#') is var i and >= 0 ? id[i..] : id;

    /// <summary>
    /// Throws, naming the field, where this header differs from what the caller expects (resuming with another
    /// model, K, vocabulary or data is an error, never a silent mix).
    /// </summary>
    internal void RequireMatch(TeacherCacheHeader expected, string path)
    {
        if (K != expected.K) throw new TeacherCacheException(path, "K", $"the cache holds top-{K}, expected top-{expected.K}");
        if (Vocab != expected.Vocab) throw new TeacherCacheException(path, "vocab", $"the cache has vocab {Vocab}, the model {expected.Vocab}");
        if (DType != expected.DType) throw new TeacherCacheException(path, "dtype", $"{DType}, expected {expected.DType}");
        if (!IsForModel(expected.ModelId)) throw new TeacherCacheException(path, "model id", $"'{ModelId}', expected '{expected.ModelId}'");
        if (SequenceLength != expected.SequenceLength)
            throw new TeacherCacheException(path, "sequence length", $"{SequenceLength}, expected {expected.SequenceLength}");
        if (DataTokens != expected.DataTokens || DataChecksum != expected.DataChecksum)
            throw new TeacherCacheException(path, "data", $"the cache was made from {DataTokens} tokens with CRC-32 0x{DataChecksum:x8}, the data given has {expected.DataTokens} tokens with 0x{expected.DataChecksum:x8}");
    }

    /// <summary>CRC-32 of token ids as little-endian int32, the data fingerprint stored in the header.</summary>
    public static uint ChecksumTokens(ReadOnlySpan<int> tokens)
    {
        var crc = new Crc32();
        Span<byte> buffer = stackalloc byte[4096];
        for (int i = 0; i < tokens.Length; i += 1024)
        {
            int n = Math.Min(1024, tokens.Length - i);
            for (int j = 0; j < n; j++) BinaryPrimitives.WriteInt32LittleEndian(buffer[(4 * j)..], tokens[i + j]);
            crc.Append(buffer[..(4 * n)]);
        }
        return crc.GetCurrentHashAsUInt32();
    }

    private void Validate(string path)
    {
        if (K < 1) throw new TeacherCacheException(path, "K", $"{K} must be >= 1");
        if (Vocab < 1) throw new TeacherCacheException(path, "vocab", $"{Vocab} must be >= 1");
        if (K > Vocab) throw new TeacherCacheException(path, "K", $"{K} exceeds vocab {Vocab}");
        if (DType != TeacherCacheDType.Float32) throw new TeacherCacheException(path, "dtype", $"{(uint)DType} is not supported (1 = fp32)");
        if (SequenceLength < 1) throw new TeacherCacheException(path, "sequence length", $"{SequenceLength} must be >= 1");
        if (DataTokens < 0) throw new TeacherCacheException(path, "data tokens", $"{DataTokens} is negative");
        if (Encoding.UTF8.GetByteCount(ModelId) > MaxModelIdBytes)
            throw new TeacherCacheException(path, "model id", $"longer than {MaxModelIdBytes} UTF-8 bytes");
    }

    internal static int ReadFully(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }
}
