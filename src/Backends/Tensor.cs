namespace E3.Backends;

/// <summary>
/// A dense row-major tensor owned by one backend. Its memory is native (host or device) and is released
/// by <see cref="Dispose"/>, never by a finalizer.
/// </summary>
internal abstract class Tensor : IDisposable
{
    protected Tensor(DType dtype, int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        long count = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentOutOfRangeException(nameof(shape), $"negative dimension {d} in [{string.Join(", ", shape)}]");
            count = checked(count * d);
        }
        DType = dtype;
        Shape = (int[])shape.Clone();
        ElementCount = count;
    }

    public DType DType { get; }
    public int[] Shape { get; }
    public long ElementCount { get; }
    public long SizeInBytes => ElementCount * DType.SizeInBytes();
    public int Rank => Shape.Length;
    /// <summary>Size of the last dimension (the row length of a row-major matrix view).</summary>
    public int Columns => Shape.Length == 0 ? 1 : Shape[^1];
    /// <summary>Number of rows when viewed as a [rows, Columns] matrix.</summary>
    public long Rows => Columns == 0 ? 0 : ElementCount / Columns;

    public bool IsDisposed { get; private set; }

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        Release();
        GC.SuppressFinalize(this);
    }

    protected abstract void Release();

    public override string ToString() => $"{DType}[{string.Join(", ", Shape)}]";
}
