using System.Buffers.Binary;
using System.Text;

namespace E3.Tests.IO;

/// <summary>Builds .npy bytes by hand from the format description (magic, version, header length, dict, data), sharing no code with NpyFile.</summary>
public static class RawNpy
{
    public static byte[] Build(string dictionary, byte[] data, byte major = 1, byte[]? magic = null)
    {
        byte[] dict = Encoding.Latin1.GetBytes(dictionary + "\n");
        int lengthField = major == 1 ? 2 : 4;
        var file = new List<byte>();
        file.AddRange(magic ?? [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y']);
        file.Add(major);
        file.Add(0);
        var length = new byte[lengthField];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(length, (ushort)dict.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)dict.Length);
        file.AddRange(length);
        file.AddRange(dict);
        file.AddRange(data);
        return file.ToArray();
    }

    public static byte[] Int32s(params int[] values) => values.SelectMany(v => { var b = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, v); return b; }).ToArray();
    public static byte[] UInt32s(params uint[] values) => values.SelectMany(v => { var b = new byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, v); return b; }).ToArray();
    public static byte[] Int64s(params long[] values) => values.SelectMany(v => { var b = new byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, v); return b; }).ToArray();
    public static byte[] Floats(params float[] values) => values.SelectMany(v => { var b = new byte[4]; BinaryPrimitives.WriteSingleLittleEndian(b, v); return b; }).ToArray();
}
