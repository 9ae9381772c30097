using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace E3.Interop.Gpu;

/// <summary>The C type of one kernel argument.</summary>
internal enum KernelArgKind : byte
{
    /// <summary>A device pointer (8 bytes).</summary>
    Pointer,

    /// <summary><c>int</c>.</summary>
    Int32,

    /// <summary><c>unsigned int</c>.</summary>
    UInt32,

    /// <summary><c>float</c>.</summary>
    Float32,

    /// <summary><c>long long</c>.</summary>
    Int64,
}

/// <summary>
/// The argument block of one launch, built on the stack with no allocation: values are packed into an inline
/// buffer at their natural alignment (the layout the kernel's parameter list has), and
/// <see cref="WritePointers"/> produces the <c>void**</c> array <c>cuLaunchKernel</c> expects. Being a
/// <c>ref struct</c>, it can only live on the stack, so the addresses it hands out cannot move during the launch.
/// Offsets, sizes and kinds are inspectable so that the layout of every typed wrapper can be tested without a GPU.
/// </summary>
internal ref struct KernelArgs
{
    /// <summary>Most arguments one block holds.</summary>
    public const int MaxArguments = 24;

    /// <summary>Most value bytes one block holds (CUDA allows 4 KiB; E3's kernels need far less).</summary>
    public const int MaxBytes = 256;

    private ValueWords values;
    private OffsetBuffer offsets;
    private KindBuffer kinds;
    private int count;
    private int used;

    /// <summary>Number of arguments added.</summary>
    public readonly int Count => count;

    /// <summary>Bytes of the packed block, including alignment padding.</summary>
    public readonly int SizeInBytes => used;

    /// <summary>Appends a device pointer.</summary>
    public void Add(DevicePtr pointer) => Append(pointer.Address, KernelArgKind.Pointer);

    /// <summary>Appends a typed device pointer.</summary>
    public void Add<T>(DevicePointer<T> pointer) where T : unmanaged => Append(pointer.Address, KernelArgKind.Pointer);

    /// <summary>Appends an <c>int</c>.</summary>
    public void Add(int value) => Append(value, KernelArgKind.Int32);

    /// <summary>Appends an <c>unsigned int</c>.</summary>
    public void Add(uint value) => Append(value, KernelArgKind.UInt32);

    /// <summary>Appends a <c>float</c>.</summary>
    public void Add(float value) => Append(value, KernelArgKind.Float32);

    /// <summary>Appends a <c>long long</c>.</summary>
    public void Add(long value) => Append(value, KernelArgKind.Int64);

    /// <summary>Byte offset of argument <paramref name="index"/> in the packed block.</summary>
    public readonly int OffsetOf(int index) => offsets[Checked(index)];

    /// <summary>Size in bytes of argument <paramref name="index"/>.</summary>
    public readonly int SizeOf(int index) => SizeOf(kinds[Checked(index)]);

    /// <summary>Required alignment of argument <paramref name="index"/> (its natural alignment).</summary>
    public readonly int AlignmentOf(int index) => SizeOf(index);

    /// <summary>C type of argument <paramref name="index"/>.</summary>
    public readonly KernelArgKind KindOf(int index) => kinds[Checked(index)];

    /// <summary>The packed value bytes (little-endian), e.g. for an emulator that copies arguments.</summary>
    public readonly ReadOnlySpan<byte> Bytes => MemoryMarshal.CreateReadOnlySpan(ref Unsafe.As<ulong, byte>(ref Unsafe.AsRef(in values[0])), used);

    /// <summary>The value of argument <paramref name="index"/> read back as <typeparamref name="T"/>.</summary>
    public readonly T Read<T>(int index) where T : unmanaged => MemoryMarshal.Read<T>(Bytes.Slice(OffsetOf(index), SizeOf(index)));

    /// <summary>
    /// Fills <paramref name="block"/>[i] with the address of argument i. The addresses point into this value,
    /// so the block is valid only while this <see cref="KernelArgs"/> is alive and unmodified.
    /// </summary>
    public readonly unsafe void WritePointers(Span<nint> block)
    {
        if (block.Length < count)
            throw new ArgumentException($"pointer block holds {block.Length} entries; {count} arguments need one each", nameof(block));
        var start = (byte*)Unsafe.AsPointer(ref Unsafe.AsRef(in values[0]));
        for (int i = 0; i < count; i++)
            block[i] = (nint)(start + offsets[i]);
    }

    private static int SizeOf(KernelArgKind kind) => kind is KernelArgKind.Pointer or KernelArgKind.Int64 ? 8 : 4;

    private readonly int Checked(int index) => (uint)index < (uint)count
        ? index
        : throw new ArgumentOutOfRangeException(nameof(index), index, $"the block holds {count} arguments");

    private void Append<T>(T value, KernelArgKind kind) where T : unmanaged
    {
        int size = SizeOf(kind);
        int offset = (used + size - 1) & -size;
        if (count == MaxArguments || offset + size > MaxBytes)
            throw new InvalidOperationException($"kernel argument block full ({count} arguments, {used} bytes; limits {MaxArguments} and {MaxBytes})");
        MemoryMarshal.Write(MemoryMarshal.CreateSpan(ref Unsafe.As<ulong, byte>(ref values[0]), MaxBytes).Slice(offset, size), in value);
        offsets[count] = (short)offset;
        kinds[count] = kind;
        count++;
        used = offset + size;
    }

    // 8-byte aligned storage so that every value sits at its natural alignment in memory too.
    [InlineArray(MaxBytes / 8)]
    private struct ValueWords
    {
        private ulong element;
    }

    [InlineArray(MaxArguments)]
    private struct OffsetBuffer
    {
        private short element;
    }

    [InlineArray(MaxArguments)]
    private struct KindBuffer
    {
        private KernelArgKind element;
    }
}
