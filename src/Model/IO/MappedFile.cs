using System.IO.MemoryMappedFiles;

namespace E3.Model.IO;

/// <summary>
/// A whole file mapped read-only with one view, handed out as spans over the mapping. The pointer and the
/// mapping are released in <see cref="Dispose"/>; spans taken earlier must not be used after that.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    MemoryMappedFile? _map;
    MemoryMappedViewAccessor? _view;
    byte* _base;
    bool _disposed;

    MappedFile(string path, long length, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte* basePointer)
    {
        Path = path;
        Length = length;
        _map = map;
        _view = view;
        _base = basePointer;
    }

    public string Path { get; }
    public long Length { get; }

    public static MappedFile Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = stream.Length;
        // The OS cannot map an empty file; callers reject it by its length anyway.
        if (length == 0)
        {
            stream.Dispose();
            return new MappedFile(path, 0, null, null, null);
        }
        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return new MappedFile(path, length, map, view, pointer + view.PointerOffset);
        }
        catch
        {
            view?.Dispose();
            if (map != null) map.Dispose(); else stream.Dispose();
            throw;
        }
    }

    /// <summary>Bytes [offset, offset + count) of the file.</summary>
    public ReadOnlySpan<byte> Span(long offset, long count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset < 0 || count < 0 || offset > Length - count)
            throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: bytes [{offset}, {offset + count}) are outside the {Length}-byte file");
        if (count > int.MaxValue)
            throw new NotSupportedException($"{Path}: {count} bytes at offset {offset} exceed the 2 GiB a span can address");
        return count == 0 ? ReadOnlySpan<byte>.Empty : new ReadOnlySpan<byte>(_base + offset, (int)count);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view != null && _base != null) _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _base = null;
        _view?.Dispose();
        _map?.Dispose();
        _view = null;
        _map = null;
    }
}
