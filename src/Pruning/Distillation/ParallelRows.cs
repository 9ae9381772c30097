using System.Runtime.ExceptionServices;

namespace E3.Pruning.Distillation;

/// <summary>Parallel.For over rows with per-thread scratch, rethrowing the first failure as itself rather than wrapped.</summary>
internal static class ParallelRows
{
    public static void For<TScratch>(int rows, Func<TScratch> scratch, Func<int, TScratch, TScratch> body)
    {
        try
        {
            Parallel.For(0, rows, scratch, (t, _, s) => body(t, s), _ => { });
        }
        catch (AggregateException e) when (e.InnerExceptions.Count > 0)
        {
            ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
        }
    }
}
