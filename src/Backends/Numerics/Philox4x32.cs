using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace E3.Backends.Numerics;

/// <summary>Four 32-bit output words of one Philox-4x32-10 call.</summary>
internal readonly record struct PhiloxBlock(uint X0, uint X1, uint X2, uint X3);

/// <summary>
/// The Philox-4x32-10 counter-based generator (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
/// SC'11) with the Random123 constants. kernels/gumbel_topk.cu implements the very same function.
/// </summary>
internal static class Philox4x32
{
    private const uint Multiplier0 = 0xD2511F53u, Multiplier1 = 0xCD9E8D57u;
    private const uint Weyl0 = 0x9E3779B9u, Weyl1 = 0xBB67AE85u;

    /// <summary>Ten rounds over the counter (c0..c3) under the key (k0, k1).</summary>
    public static PhiloxBlock Generate(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (var round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += Weyl0;
                k1 += Weyl1;
            }
            var p0 = (ulong)Multiplier0 * c0;
            var p1 = (ulong)Multiplier1 * c2;
            var next0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            var next2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint)p1;
            c3 = (uint)p0;
            c0 = next0;
            c2 = next2;
        }
        return new PhiloxBlock(c0, c1, c2, c3);
    }

    /// <summary>
    /// <see cref="Generate"/> for four counters at once, one per 64-bit lane (each word in the lane's low 32 bits,
    /// high bits zero; outputs likewise). AVX2's 32x32-&gt;64-bit multiply of the even words is Philox's
    /// mulhilo, so every lane computes exactly the scalar function. Requires <see cref="Avx2.IsSupported"/>.
    /// </summary>
    internal static void Generate4(ref Vector256<ulong> c0, ref Vector256<ulong> c1, ref Vector256<ulong> c2, ref Vector256<ulong> c3,
        uint k0, uint k1)
    {
        var multiplier0 = Vector256.Create((ulong)Multiplier0).AsUInt32();
        var multiplier1 = Vector256.Create((ulong)Multiplier1).AsUInt32();
        var low32 = Vector256.Create(0xFFFF_FFFFUL);
        for (var round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += Weyl0;
                k1 += Weyl1;
            }
            var p0 = Avx2.Multiply(c0.AsUInt32(), multiplier0);
            var p1 = Avx2.Multiply(c2.AsUInt32(), multiplier1);
            var next0 = Vector256.ShiftRightLogical(p1, 32) ^ c1 ^ Vector256.Create((ulong)k0);
            var next2 = Vector256.ShiftRightLogical(p0, 32) ^ c3 ^ Vector256.Create((ulong)k1);
            c1 = p1 & low32;
            c3 = p0 & low32;
            c0 = next0;
            c2 = next2;
        }
    }
}
