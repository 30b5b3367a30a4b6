using System.Globalization;
using System.Numerics;

namespace VlPeft.Evaluation.Metrics;

/// <summary>
/// Python's rounding of floats, reproduced exactly: "{:.2f}".format(x) and round(x, 2) round the
/// exact binary value, ties to even (.NET's "F2" rounds ties away from zero). Official scorers
/// print their numbers this way, so ours must too.
/// </summary>
public static class PythonNumbers
{
    /// <summary>"{:.Nf}".format(value).</summary>
    public static string Fixed(double value, int decimals = 2)
    {
        if (double.IsNaN(value) || double.IsInfinity(value)) return value.ToString(CultureInfo.InvariantCulture);
        var scaled = RoundScaled(value, decimals);
        bool negative = scaled.Sign < 0 || (scaled.IsZero && double.IsNegative(value));
        var magnitude = BigInteger.Abs(scaled);
        var factor = BigInteger.Pow(10, decimals);
        string integer = (magnitude / factor).ToString(CultureInfo.InvariantCulture);
        string fraction = decimals == 0 ? "" : "." + (magnitude % factor).ToString(CultureInfo.InvariantCulture).PadLeft(decimals, '0');
        return (negative ? "-" : "") + integer + fraction;
    }

    /// <summary>round(value, N) as Python 3 computes it.</summary>
    public static double Round(double value, int decimals = 2) =>
        double.Parse(Fixed(value, decimals), CultureInfo.InvariantCulture);

    /// <summary>value·10^N rounded half-even on the exact binary value.</summary>
    static BigInteger RoundScaled(double value, int decimals)
    {
        long bits = BitConverter.DoubleToInt64Bits(value);
        bool negative = bits < 0;
        int exponent = (int)((bits >> 52) & 0x7FF);
        long mantissa = bits & 0xFFFFFFFFFFFFFL;
        if (exponent == 0) exponent++; else mantissa |= 1L << 52;
        exponent -= 1075; // value = mantissa · 2^exponent
        BigInteger numerator = new BigInteger(mantissa) * BigInteger.Pow(10, decimals);
        BigInteger result;
        if (exponent >= 0) result = numerator << exponent;
        else
        {
            var denominator = BigInteger.One << -exponent;
            var quotient = BigInteger.DivRem(numerator, denominator, out var remainder);
            int cmp = (remainder * 2).CompareTo(denominator);
            result = cmp > 0 || (cmp == 0 && !quotient.IsEven) ? quotient + 1 : quotient;
        }
        return negative ? -result : result;
    }
}
