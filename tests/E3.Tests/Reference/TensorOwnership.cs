using static TorchSharp.torch;

namespace E3.Tests.Reference;

/// <summary>Releases tensors this folder created outside any dispose scope (loaded weights).</summary>
internal static class TensorOwnership
{
    public static void DisposeAll(IEnumerable<Tensor> tensors)
    {
        foreach (var tensor in tensors)
        {
            tensor.Dispose();
        }
    }
}
