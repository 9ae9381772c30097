namespace E3.Tests.Masking;

/// <summary>
/// Chi-square p-values from the regularised upper incomplete gamma function Q(a, x) (series for x &lt; a + 1,
/// Lentz continued fraction otherwise; ln Gamma by Lanczos, g = 7, n = 9), all in double.
/// </summary>
internal static class ChiSquare
{
    /// <summary>P(X &gt;= statistic) for X ~ chi-square with <paramref name="degreesOfFreedom"/>.</summary>
    public static double PValue(double statistic, int degreesOfFreedom) => UpperRegularizedGamma(degreesOfFreedom / 2.0, statistic / 2.0);

    public static double UpperRegularizedGamma(double a, double x)
    {
        if (x <= 0)
            return 1.0;
        var logPrefix = a * Math.Log(x) - x - LogGamma(a);
        if (x < a + 1)
        {
            // P(a, x) = x^a e^-x / Gamma(a + 1) * sum_n x^n / ((a + 1) ... (a + n))
            double term = 1.0 / a, sum = term;
            for (var n = 1; n < 10_000 && Math.Abs(term) > Math.Abs(sum) * 1e-17; n++)
            {
                term *= x / (a + n);
                sum += term;
            }
            return 1.0 - sum * Math.Exp(logPrefix);
        }
        // Q(a, x) = x^a e^-x * 1 / (x + 1 - a - 1(1 - a) / (x + 3 - a - 2(2 - a) / (x + 5 - a - ...)))
        const double tiny = 1e-300;
        var b = x + 1 - a;
        var c = 1 / tiny;
        var d = 1 / b;
        var h = d;
        for (var i = 1; i < 10_000; i++)
        {
            var an = -i * (i - a);
            b += 2;
            d = an * d + b;
            if (Math.Abs(d) < tiny) d = tiny;
            c = b + an / c;
            if (Math.Abs(c) < tiny) c = tiny;
            d = 1 / d;
            var delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-16)
                break;
        }
        return Math.Exp(logPrefix) * h;
    }

    public static double LogGamma(double z)
    {
        if (z < 0.5) // reflection
            return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * z))) - LogGamma(1 - z);
        ReadOnlySpan<double> coefficients =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        z -= 1;
        var sum = coefficients[0];
        for (var i = 1; i < coefficients.Length; i++)
            sum += coefficients[i] / (z + i);
        var t = z + 7.5;
        return 0.5 * Math.Log(2 * Math.PI) + (z + 0.5) * Math.Log(t) - t + Math.Log(sum);
    }
}
