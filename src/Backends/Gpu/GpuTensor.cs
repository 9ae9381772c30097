using E3.Interop.Gpu;
using E3.Interop.Kernels;

namespace E3.Backends.Gpu;

/// <summary>
/// A tensor in device memory of one <see cref="GpuBackend"/> (host memory under the emulator). Released by
/// <see cref="Tensor.Dispose"/>, together with the converted copy the backend may keep of a weight.
/// </summary>
internal sealed class GpuTensor : Tensor
{
    readonly DeviceBuffer? _buffer; // null for a view, which owns nothing
    readonly DevicePtr _view;
    GpuTensor? _converted;

    internal GpuTensor(GpuBackend owner, DeviceBuffer buffer, DType dtype, int[] shape) : base(dtype, shape)
    {
        Owner = owner;
        _buffer = buffer;
    }

    GpuTensor(GpuBackend owner, DevicePtr view, DType dtype, int[] shape) : base(dtype, shape)
    {
        Owner = owner;
        _view = view;
    }

    /// <summary>
    /// A tensor over memory the backend owns elsewhere (a scratch buffer), valid only within the operation that made it:
    /// the backend may overwrite or reallocate that memory at its next operation. Disposing it releases nothing.
    /// </summary>
    internal static GpuTensor View(GpuBackend owner, DevicePtr pointer, DType dtype, int[] shape) => new(owner, pointer, dtype, shape);

    internal GpuBackend Owner { get; }

    /// <summary>The first element's device address.</summary>
    public DevicePtr Pointer => IsDisposed ? throw new ObjectDisposedException(ToString()) : _buffer?.Pointer ?? _view;

    internal DevicePointer<float> F32 => DType == DType.F32 ? new(Pointer) : throw new InvalidOperationException($"{this} is not F32");
    internal DevicePointer<Bf16> BF16 => DType == DType.BF16 ? new(Pointer) : throw new InvalidOperationException($"{this} is not BF16");

    /// <summary>
    /// A copy of this tensor in another dtype, made once when a weight's dtype differs from the one a kernel computes
    /// in (fp32 norm weights under bf16 activations, say). Weights are never written by kernels, so the copy stays
    /// valid until the next host upload into this tensor, which drops it.
    /// </summary>
    internal GpuTensor? Converted
    {
        get => _converted;
        set
        {
            _converted?.Dispose();
            _converted = value;
        }
    }

    protected override void Release()
    {
        Converted = null;
        _buffer?.Dispose();
    }
}
