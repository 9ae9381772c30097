namespace E3.Model.IO;

/// <summary>One mapped .safetensors file with its validated header.</summary>
internal sealed class SafeTensorsFile : IDisposable
{
    readonly MappedFile _map;

    SafeTensorsFile(MappedFile map, SafeTensorsHeader header)
    {
        _map = map;
        Header = header;
    }

    public string Path => _map.Path;
    public SafeTensorsHeader Header { get; }

    public static SafeTensorsFile Open(string path)
    {
        MappedFile map = MappedFile.Open(path);
        try
        {
            return new SafeTensorsFile(map, SafeTensorsHeader.Read(map));
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    public ReadOnlySpan<byte> Bytes(TensorEntry entry)
    {
        if (entry.ByteLength > int.MaxValue)
            throw new SafeTensorsFormatException(Path, entry.Name, $"{entry.ByteLength} bytes exceed the 2 GiB one span can address");
        return _map.Span(entry.DataOffset, entry.ByteLength);
    }

    public void Dispose() => _map.Dispose();
}
