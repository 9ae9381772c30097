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

    /// <summary>
    /// Overwrites elements [<paramref name="from"/>, <paramref name="to"/>) (to: the tensor's end when null) of the fp32
    /// tensor <paramref name="name"/> (the first in the header when null) of the file at <paramref name="path"/> with
    /// <paramref name="value"/>, in place, and returns the tensor's name: a NaN planted in a weight file, say.
    /// </summary>
    public static string SetF32(string path, float value, string? name = null, long from = 0, long? to = null)
    {
        byte[] file = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        using var document = JsonDocument.Parse(Encoding.UTF8.GetString(file, 8, (int)headerLength));
        var tensor = document.RootElement.EnumerateObject().First(p => p.Name != "__metadata__" && (name == null || p.Name == name));
        if (tensor.Value.GetProperty("dtype").GetString() != "F32") throw new ArgumentException($"{tensor.Name} is not F32", nameof(name));
        long[] offsets = tensor.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        long start = 8 + headerLength + offsets[0], end = to ?? (offsets[1] - offsets[0]) / 4;
        for (long i = from; i < end; i++) BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan((int)(start + 4 * i)), value);
        File.WriteAllBytes(path, file);
        return tensor.Name;
    }

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
