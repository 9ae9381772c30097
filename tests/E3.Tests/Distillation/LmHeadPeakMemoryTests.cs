using E3.Pruning.Distillation;
using Xunit;

namespace E3.Tests.Distillation;

/// <summary>
/// Managed allocations are counted process-wide (the loss runs on the thread pool), so these tests run alone,
/// after every parallel collection.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationMeasuringCollection
{
    public const string Name = "allocation measuring";
}

/// <summary>
/// The chunked LM-head KD pass holds one [chunk rows, V] logits buffer beyond its inputs and outputs; the
/// unchunked pass (a budget of the whole [T, V]) holds T·V·4 bytes. Measured as the bytes the call allocates
/// (GC.GetTotalAllocatedBytes, precise): nothing the call allocates outlives it, so its peak extra managed memory
/// lies between its largest live buffer (the chunk, alive for the whole call) and that total. CpuGemm and the
/// loss allocate no native memory, so managed bytes are all of it.
/// </summary>
[Collection(AllocationMeasuringCollection.Name)]
public sealed class LmHeadPeakMemoryTests
{
    // The real Qwen vocabulary, so a row is 607,744 bytes; T and H kept small for test time (the chunk size does
    // not depend on H, and the unchunked size is exactly proportional to T).
    private const int Rows = 64, Vocab = 151_936, HiddenSize = 16;
    private const long RowBytes = Vocab * sizeof(float);

    [Theory]
    [InlineData(4 * RowBytes + 100, 4)]   // a few MB: 4 rows per chunk, 16 chunks
    [InlineData(16 * RowBytes, 16)]       // 4 chunks
    [InlineData(Rows * RowBytes, Rows)]   // the unchunked pass: the whole [T, V] logits at once
    public void PeakExtraMemoryIsOneChunkPlusPerRowState(long budget, int expectedChunkRows)
    {
        var hidden = KdTestData.Logits(Rows * HiddenSize, 40, 1.0);
        var head = KdTestData.Logits(Vocab * HiddenSize, 41, 0.3);
        var teacher = new DenseTeacher(KdTestData.Logits(Rows * Vocab, 42), Rows, Vocab);
        var labels = KdTestData.Labels(Rows, Vocab, 43, 5);
        var options = new KdOptions { Temperature = 2, KdFraction = 0.5 };
        var dHidden = new float[hidden.Length];
        var dHead = new float[head.Length];
        // Warm-up, twice: JIT and the thread pool's growth allocate on first use, which is not the pass's memory.
        for (int i = 0; i < 2; i++)
            EntropyKdLmHead.Compute(hidden, HiddenSize, head, Vocab, teacher, labels, options, dHidden, dHead, budget);

        long before = GC.GetTotalAllocatedBytes(precise: true);
        var result = EntropyKdLmHead.Compute(hidden, HiddenSize, head, Vocab, teacher, labels, options, dHidden, dHead, budget);
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;

        long chunkBytes = expectedChunkRows * RowBytes;
        Assert.Equal(expectedChunkRows, result.ChunkRows);
        Assert.Equal(chunkBytes, result.ChunkBytes);
        // Per-row state: the plan keeps at most 8 values of <= 8 bytes per token (validity, label, entropy, weight,
        // coefficient, teacher max and log-sum) and each chunk two doubles per row: 128 bytes per token covers it.
        // Each chunk's Parallel.For allocates task and closure objects (measured ~10 KB per chunk: 16 KB allowed),
        // and the thread pool may still add a worker during a long call (measured up to 0.3 MB once before it
        // settles: 512 KB allowed). All of it is transient, so it overstates the peak; it stays below half a chunk,
        // so a second chunk-sized buffer or a [T, V] probability tensor could not hide in it.
        long chunks = (Rows + expectedChunkRows - 1) / expectedChunkRows;
        long slack = 128L * Rows + 16_384 * chunks + 524_288;
        Assert.True(slack < chunkBytes / 2);
        Assert.InRange(allocated, chunkBytes, chunkBytes + slack);
    }
}
