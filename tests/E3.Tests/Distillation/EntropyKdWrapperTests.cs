using E3.Interop.Kernels;
using Xunit;

namespace E3.Tests.Cuda;

/// <summary>EntropyKdKernels' parameter blocks against the C signatures in kernels/entropy_kd.cu (helpers in KernelWrapperTests).</summary>
public sealed partial class KernelWrapperTests
{
    [Fact]
    public void EntropyKdWrappersMatchTheirSignatures()
    {
        using var device = new RecordingGpuDevice();
        var stats = new KdTeacherStatistics(F3, F4, F5);
        var settings = new KdStudentRows(F5, Ids, 0.25f, 0.5f, true, F3, F4);
        using (var kernels = new EntropyKdKernels(device))
        {
            kernels.TeacherPass(F1, 152_064, 4, 151_936, 0.5f, stats, Stream);
            kernels.TeacherPass(B1, 31, 2, 31, 1f, stats, Stream);
            kernels.Dense(F1, 151_936, F2, 152_064, 4, 151_936, stats, settings, Stream);
            kernels.Dense(B1, 33, B2, 31, 3, 31, stats, settings with { Reverse = false }, Stream);
            kernels.Dense(F1, 152_064, B2, 151_936, 7, 151_936, stats, settings, Stream);
            kernels.Sparse(F1, 100, 5, 100, Ids, F2, 10, settings, Stream);
            kernels.Sparse(B1, 100, 6, 99, Ids, F2, 64, settings, Stream);
            Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Sparse(F1, 100, 5, 100, Ids, F2, 65, settings, Stream));
            Assert.Throws<ArgumentOutOfRangeException>(() => kernels.Dense(F1, 30, F2, 31, 1, 31, stats, settings, Stream));
        }
        var l = device.Launches;
        Check(l[0], "e3_kd_teacher_f32", RowShape(4), F1.Address, 152_064, 4, 151_936, 0.5f, F3.Address, F4.Address, F5.Address);
        Check(l[1], "e3_kd_teacher_bf16", RowShape(2), B1.Address, 31, 2, 31, 1f, F3.Address, F4.Address, F5.Address);
        Check(l[2], "e3_kd_dense_f32", RowShape(4), F1.Address, 151_936, F2.Address, 152_064, 4, 151_936, F3.Address, F4.Address, F5.Address,
            F5.Address, Ids.Address, 0.25f, 0.5f, 1, F3.Address, F4.Address);
        Check(l[3], "e3_kd_dense_bf16", RowShape(3), B1.Address, 33, B2.Address, 31, 3, 31, F3.Address, F4.Address, F5.Address,
            F5.Address, Ids.Address, 0.25f, 0.5f, 0, F3.Address, F4.Address);
        Check(l[4], "e3_kd_dense_f32_bf16", RowShape(7), F1.Address, 152_064, B2.Address, 151_936, 7, 151_936, F3.Address, F4.Address, F5.Address,
            F5.Address, Ids.Address, 0.25f, 0.5f, 1, F3.Address, F4.Address);
        Check(l[5], "e3_kd_sparse_f32", RowShape(5), F1.Address, 100, 5, 100, Ids.Address, F2.Address, 10, F5.Address, Ids.Address, 0.25f, 0.5f, 1, F3.Address, F4.Address);
        Check(l[6], "e3_kd_sparse_bf16", RowShape(6), B1.Address, 100, 6, 99, Ids.Address, F2.Address, 64, F5.Address, Ids.Address, 0.25f, 0.5f, 1, F3.Address, F4.Address);
        Assert.Equal(7, l.Count);
        Assert.Equal(["entropy_kd"], device.LoadedModules);
    }
}
