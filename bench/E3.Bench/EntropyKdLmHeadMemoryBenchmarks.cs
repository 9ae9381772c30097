using BenchmarkDotNet.Attributes;
using E3.Pruning.Distillation;

namespace E3.Bench;

/// <summary>
/// The LM-head KD pass (logits GEMM, loss and gradient in place, dHidden GEMM; frozen head) with a chunk budget
/// against the unchunked pass (a budget of the whole [T, V]: full logits, then the loss), at T = 512,
/// V = 151,936 and H = 64 (H only scales the GEMM time; the logits buffers do not depend on it, and H = 1024
/// would make W 622 MB and each call minutes on two shared cores). Peak extra memory: MemoryDiagnoser's
/// Allocated column, also printed from setup in bytes (managed bytes per call; the pass allocates nothing
/// native, and the chunk lives for the whole call, so this bounds the peak from above and the chunk from below).
/// Peak RSS is not used here: once an earlier call has made the GC commit the memory, a later one reuses it
/// without raising RSS, so it reads near 0 for any budget after the first.
/// Run: dotnet run -c Release --project bench/E3.Bench -- --filter '*EntropyKdLmHeadMemory*'
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class EntropyKdLmHeadMemoryBenchmarks
{
    private const int Rows = 512, Vocab = 151_936, HiddenSize = 64;
    private float[] hidden = [], head = [], dHidden = [];
    private DenseTeacher teacher = null!;
    private int[] labels = [];
    private readonly KdOptions options = new() { Temperature = 2.0, KdFraction = 0.5 };

    /// <summary>Bytes the chunk may take: 8 MiB (13 rows of V fp32), or the whole [T, V] for the unchunked pass.</summary>
    [Params(8L << 20, (long)Rows * Vocab * sizeof(float))]
    public long BudgetBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(3);
        hidden = Enumerable.Range(0, Rows * HiddenSize).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        head = Enumerable.Range(0, Vocab * HiddenSize).Select(_ => (float)(random.NextDouble() * 0.2 - 0.1)).ToArray();
        var teacherLogits = new float[Rows * Vocab];
        for (int i = 0; i < teacherLogits.Length; i++) teacherLogits[i] = (float)(random.NextDouble() * 12 - 6);
        teacher = new DenseTeacher(teacherLogits, Rows, Vocab);
        labels = Enumerable.Range(0, Rows).Select(_ => random.Next(Vocab)).ToArray();
        dHidden = new float[hidden.Length];
        var result = Run();
        long before = GC.GetTotalAllocatedBytes(precise: true);
        Run();
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Console.WriteLine($"// budget {BudgetBytes} B: chunk {result.ChunkRows} rows = {result.ChunkBytes} B; allocated per call {allocated} B; " +
            $"T*V*4 = {(long)Rows * Vocab * sizeof(float)} B");
    }

    [Benchmark]
    public double LmHeadKd() => Run().Loss.Loss;

    private LmHeadKdResult Run() =>
        EntropyKdLmHead.Compute(hidden, HiddenSize, head, Vocab, teacher, labels, options, dHidden, [], BudgetBytes);
}
