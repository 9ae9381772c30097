using System.Runtime.InteropServices;
using E3.Interop.Gpu;
using Xunit;

namespace E3.Tests.Cuda;

public sealed class KernelArgsTests
{
    [Fact]
    public void ValuesAreNaturallyAlignedLikeACParameterList()
    {
        var args = new KernelArgs();
        args.Add(7);                                     // int       at 0
        args.Add(new DevicePtr(0x1234_5678_9abc_def0));   // pointer   at 8 (4 bytes of padding)
        args.Add(2.5f);                                  // float     at 16
        args.Add(3u);                                    // unsigned  at 20
        args.Add(-9L);                                   // long long at 24
        args.Add(new DevicePointer<float>(0x40));        // pointer   at 32

        Assert.Equal(6, args.Count);
        Assert.Equal(40, args.SizeInBytes);
        var offsets = new int[6];
        var sizes = new int[6];
        var alignments = new int[6];
        var kinds = new KernelArgKind[6];
        for (int i = 0; i < 6; i++)
        {
            offsets[i] = args.OffsetOf(i);
            sizes[i] = args.SizeOf(i);
            alignments[i] = args.AlignmentOf(i);
            kinds[i] = args.KindOf(i);
        }
        Assert.Equal([0, 8, 16, 20, 24, 32], offsets);
        Assert.Equal([4, 8, 4, 4, 8, 8], sizes);
        Assert.Equal([4, 8, 4, 4, 8, 8], alignments);
        Assert.Equal(
            [KernelArgKind.Int32, KernelArgKind.Pointer, KernelArgKind.Float32, KernelArgKind.UInt32, KernelArgKind.Int64, KernelArgKind.Pointer],
            kinds);
        Assert.Equal(7, args.Read<int>(0));
        Assert.Equal(0x1234_5678_9abc_def0UL, args.Read<ulong>(1));
        Assert.Equal(2.5f, args.Read<float>(2));
        Assert.Equal(3u, args.Read<uint>(3));
        Assert.Equal(-9L, args.Read<long>(4));
        Assert.Equal(0x40UL, args.Read<ulong>(5));
    }

    [Fact]
    public unsafe void PointerBlockAddressesEachValue()
    {
        var args = new KernelArgs();
        args.Add(11);
        args.Add(new DevicePtr(0xdead_beef_0000));
        args.Add(-1.5f);
        Span<nint> block = stackalloc nint[3];
        args.WritePointers(block);

        // What cuLaunchKernel does: dereference each void* with the parameter's type.
        Assert.Equal(11, *(int*)block[0]);
        Assert.Equal(0xdead_beef_0000UL, *(ulong*)block[1]);
        Assert.Equal(-1.5f, *(float*)block[2]);
        Assert.Equal(8, (int)(block[1] - block[0]));
        Assert.Equal(0, block[1] % 8); // an 8-byte value must sit on an 8-byte boundary in memory too
    }

    [Fact]
    public void OverfullBlockAndBadIndexFailClearly()
    {
        var args = new KernelArgs();
        for (int i = 0; i < KernelArgs.MaxArguments; i++)
            args.Add(i);
        bool threw = false;
        try
        {
            args.Add(1);
        }
        catch (InvalidOperationException e)
        {
            threw = e.Message.Contains("block full");
        }
        Assert.True(threw);
        var small = new KernelArgs();
        small.Add(1);
        bool outOfRange = false;
        try
        {
            _ = small.OffsetOf(1);
        }
        catch (ArgumentOutOfRangeException)
        {
            outOfRange = true;
        }
        Assert.True(outOfRange);
        Span<nint> tooShort = stackalloc nint[0];
        bool shortBlock = false;
        try
        {
            small.WritePointers(tooShort);
        }
        catch (ArgumentException)
        {
            shortBlock = true;
        }
        Assert.True(shortBlock);
        Assert.Equal(1, MemoryMarshal.Read<int>(small.Bytes));
    }
}
