using System.Runtime.InteropServices;
using System.Text;

namespace E3.Interop.Nvrtc;

/// <summary>A native <c>const char* const*</c> array of NUL-terminated UTF-8 strings, freed on dispose.</summary>
internal sealed unsafe class Utf8StringArray : IDisposable
{
    private readonly byte** pointers;
    private readonly int count;

    public Utf8StringArray(IReadOnlyList<string> values)
    {
        count = values.Count;
        pointers = (byte**)NativeMemory.AllocZeroed((nuint)Math.Max(1, count), (nuint)sizeof(byte*));
        for (int i = 0; i < count; i++)
        {
            int length = Encoding.UTF8.GetByteCount(values[i]);
            var text = (byte*)NativeMemory.Alloc((nuint)length + 1);
            Encoding.UTF8.GetBytes(values[i], new Span<byte>(text, length));
            text[length] = 0;
            pointers[i] = text;
        }
    }

    public byte** Pointers => count == 0 ? null : pointers;

    public void Dispose()
    {
        for (int i = 0; i < count; i++)
            NativeMemory.Free(pointers[i]);
        NativeMemory.Free(pointers);
    }
}
