using System.Buffers.Binary;

namespace E3.Tests.Reference;

/// <summary>How a written checkpoint stores its values.</summary>
public enum ReferenceStorage
{
    /// <summary>IEEE float32, exact.</summary>
    F32,

    /// <summary>IEEE float16, round-to-nearest-even from float32.</summary>
    F16,

    /// <summary>bfloat16, round-to-nearest-even from float32.</summary>
    BF16,
}

/// <summary>One tensor to write: its name, PyTorch-order shape and float32 values (row-major).</summary>
public sealed record StoredTensor(string Name, long[] Shape, float[] Values);

/// <summary>Writes safetensors files (header length, JSON header, little-endian data) atomically.</summary>
public static class SafeTensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/> in <paramref name="storage"/> via a temp file and rename.</summary>
    public static void Write(string path, IReadOnlyList<StoredTensor> tensors, ReferenceStorage storage)
    {
        string dtype = storage.ToString();
        int elementSize = SafeTensorsHeader.ElementSize(dtype);
        var entries = new List<SafeTensorsEntry>(tensors.Count);
        long offset = 0;
        foreach (var tensor in tensors)
        {
            long count = tensor.Shape.Aggregate(1L, (n, d) => checked(n * d));
            if (count != tensor.Values.Length)
            {
                throw new ArgumentException($"{tensor.Name}: shape [{string.Join(", ", tensor.Shape)}] holds {count} values, but {tensor.Values.Length} were given.", nameof(tensors));
            }

            entries.Add(new SafeTensorsEntry(tensor.Name, dtype, tensor.Shape, offset, offset + count * elementSize));
            offset += count * elementSize;
        }

        byte[] header = SafeTensorsHeader.Encode(entries);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var tensor in tensors)
            {
                stream.Write(Encode(tensor.Values, storage));
            }
        });
    }

    /// <summary>Rounds float32 to bfloat16 bits, nearest-even, keeping NaN a quiet NaN.</summary>
    public static ushort ToBFloat16Bits(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x0040);
        }

        // Adding 0x7FFF plus the lowest kept bit rounds half-way cases towards the even neighbour.
        uint rounding = 0x7FFFu + ((bits >> 16) & 1u);
        return (ushort)((bits + rounding) >> 16);
    }

    private static byte[] Encode(float[] values, ReferenceStorage storage)
    {
        int elementSize = SafeTensorsHeader.ElementSize(storage.ToString());
        var bytes = new byte[values.Length * elementSize];
        var span = bytes.AsSpan();
        for (int i = 0; i < values.Length; i++)
        {
            var slot = span.Slice(i * elementSize, elementSize);
            switch (storage)
            {
                case ReferenceStorage.F32:
                    BinaryPrimitives.WriteSingleLittleEndian(slot, values[i]);
                    break;
                case ReferenceStorage.F16:
                    BinaryPrimitives.WriteHalfLittleEndian(slot, (Half)values[i]);
                    break;
                default:
                    BinaryPrimitives.WriteUInt16LittleEndian(slot, ToBFloat16Bits(values[i]));
                    break;
            }
        }

        return bytes;
    }
}
