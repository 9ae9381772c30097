using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace E3.Tests.Reference;

/// <summary>Decodes a safetensors file's F64/F32/F16/BF16 data into float32 or float64 TorchSharp tensors.</summary>
internal static class SafeTensorsReader
{
    // Elements decoded per read: large enough to amortise the syscall, small enough for a pooled buffer.
    private const int ChunkElements = 1 << 18;

    /// <summary>
    /// Every tensor in <paramref name="path"/>, converted to <paramref name="target"/> (Float32 or Float64). The tensors
    /// belong to no dispose scope; the caller owns them.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path, ScalarType target)
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian; this reader assumes a little-endian host.");
        }

        var header = SafeTensorsHeader.Read(path);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        var tensors = new Dictionary<string, Tensor>();
        try
        {
            foreach (var entry in header.Entries)
            {
                tensors.Add(entry.Name, ReadTensor(file, header, entry, target));
            }
        }
        catch
        {
            TensorOwnership.DisposeAll(tensors.Values);

            throw;
        }

        return tensors;
    }

    private static Tensor ReadTensor(Microsoft.Win32.SafeHandles.SafeFileHandle file, SafeTensorsHeader header, SafeTensorsEntry entry, ScalarType target)
    {
        int targetSize = target == ScalarType.Float32 ? sizeof(float) : sizeof(double);
        long count = entry.ElementCount;
        if (count * targetSize > int.MaxValue)
        {
            // TorchSharp exposes tensor storage as a Span, which cannot address 2 GiB or more.
            throw new ReferenceCheckpointException(header.Path, entry.Name, $"has {count} elements, over the 2 GiB per-tensor limit of the reference reader at {target}");
        }

        var tensor = torch.empty(entry.Shape, dtype: target);
        tensor.DetachFromDisposeScope();
        int sourceSize = SafeTensorsHeader.ElementSize(entry.DType);
        byte[] raw = ArrayPool<byte>.Shared.Rent(ChunkElements * sourceSize);
        try
        {
            // TorchSharp exposes a CPU tensor's storage as a span, so values are decoded straight into it.
            var destination = tensor.bytes;
            for (long done = 0; done < count; done += ChunkElements)
            {
                int n = (int)Math.Min(ChunkElements, count - done);
                var source = raw.AsSpan(0, n * sourceSize);
                SafeTensorsHeader.ReadExactly(file, source, header.DataStart + entry.Begin + done * sourceSize, header.Path);
                if (target == ScalarType.Float32)
                {
                    Decode(source, entry.DType, MemoryMarshal.Cast<byte, float>(destination.Slice((int)(done * targetSize), n * targetSize)));
                }
                else
                {
                    Decode(source, entry.DType, MemoryMarshal.Cast<byte, double>(destination.Slice((int)(done * targetSize), n * targetSize)));
                }
            }
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(raw);
        }

        return tensor;
    }

    private static void Decode<T>(ReadOnlySpan<byte> source, string dtype, Span<T> destination)
        where T : IFloatingPointIeee754<T>
    {
        // One loop per dtype keeps the string comparison out of the per-element path.
        switch (dtype)
        {
            case "F64":
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = T.CreateTruncating(BinaryPrimitives.ReadDoubleLittleEndian(source[(i * 8)..]));
                }

                break;
            case "F32":
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = T.CreateTruncating(BinaryPrimitives.ReadSingleLittleEndian(source[(i * 4)..]));
                }

                break;
            case "F16":
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = T.CreateTruncating((float)BinaryPrimitives.ReadHalfLittleEndian(source[(i * 2)..]));
                }

                break;
            default:
                // bfloat16 is the upper half of a float32, so widening is exact.
                for (int i = 0; i < destination.Length; i++)
                {
                    destination[i] = T.CreateTruncating(BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(source[(i * 2)..]) << 16));
                }

                break;
        }
    }
}
