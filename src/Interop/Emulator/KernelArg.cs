namespace E3.Interop.Emulator;

/// <summary>
/// One kernel argument as the 8 bytes its parameter slot holds: a device pointer or a scalar. The implicit
/// conversions cover exactly the parameter types the kernel conventions allow.
/// </summary>
internal readonly struct KernelArg
{
    private KernelArg(ulong bits) => Bits = bits;

    /// <summary>The value, stored in the low bytes as the kernel's parameter type lays it out.</summary>
    public ulong Bits { get; }

    public static implicit operator KernelArg(int value) => new((uint)value);
    public static implicit operator KernelArg(uint value) => new(value);
    public static implicit operator KernelArg(long value) => new((ulong)value);
    public static implicit operator KernelArg(float value) => new(BitConverter.SingleToUInt32Bits(value));
    public static implicit operator KernelArg(EmuBuffer buffer) => new(buffer.DevicePointer);

    /// <summary>A raw device pointer (CUdeviceptr) argument.</summary>
    public static KernelArg Pointer(ulong devicePointer) => new(devicePointer);
}
