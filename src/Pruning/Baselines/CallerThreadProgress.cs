namespace E3.Pruning.Baselines;

/// <summary>
/// An <see cref="IProgress{T}"/> that reports on the calling thread. <see cref="Progress{T}"/> would post to the
/// thread pool and reorder the reports; and a cuda device's context is current on the calling thread only.
/// </summary>
internal sealed class CallerThreadProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
