using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace E3.Tests.IO;

/// <summary>
/// Test-side access to the safetensors byte layout, written from the format description and sharing no code
/// with E3.Model.IO: it builds files byte by byte and parses them back, so it can judge the reader and the writer.
/// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data area; data_offsets are
/// relative to the start of the data area.
/// </summary>
public static class RawSafeTensors
{
    /// <summary>File bytes for a header text and a data area, with an explicit (possibly lying) header length.</summary>
    public static byte[] Build(string headerJson, byte[] data, ulong? declaredHeaderLength = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredHeaderLength ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        data.CopyTo(file, 8 + header.Length);
        return file;
    }

    /// <summary>One tensor as an independent reader sees it.</summary>
    public sealed record RawTensor(string DType, long[] Shape, byte[] Bytes);

    /// <summary>A file parsed independently: tensors in header order, metadata, header length and padding.</summary>
    public sealed record RawFile(List<KeyValuePair<string, RawTensor>> Tensors, Dictionary<string, string> Metadata, long HeaderLength, string HeaderText);

    public static RawFile Parse(byte[] file)
    {
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        string headerText = Encoding.UTF8.GetString(file, 8, (int)headerLength);
        int dataStart = 8 + (int)headerLength;
        using var document = JsonDocument.Parse(headerText);
        var tensors = new List<KeyValuePair<string, RawTensor>>();
        var metadata = new Dictionary<string, string>();
        foreach (JsonProperty p in document.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                foreach (JsonProperty m in p.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            long[] offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            byte[] bytes = file[(dataStart + (int)offsets[0])..(dataStart + (int)offsets[1])];
            tensors.Add(new(p.Name, new RawTensor(p.Value.GetProperty("dtype").GetString()!, shape, bytes)));
        }
        return new RawFile(tensors, metadata, headerLength, headerText);
    }
}
