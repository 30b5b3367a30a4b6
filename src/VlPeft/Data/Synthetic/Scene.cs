namespace VlPeft.Data.Synthetic;

/// <summary>One coloured shape in a 3×3 grid cell of a synthetic scene.</summary>
public sealed record Shape(string Kind, string Color, bool Large, int Column, int Row)
{
    public string Size => Large ? "large" : "small";
    public string Name => $"{Color} {Kind}";
}

/// <summary>A procedurally drawn scene: up to nine shapes, one per cell of a 3×3 grid.</summary>
public sealed record Scene(IReadOnlyList<Shape> Shapes)
{
    public static readonly string[] Kinds = { "circle", "square", "triangle" };
    public static readonly string[] Colors = { "red", "green", "blue", "yellow", "purple" };

    static readonly Dictionary<string, (byte R, byte G, byte B)> Rgb = new()
    {
        ["red"] = (220, 40, 40), ["green"] = (40, 170, 60), ["blue"] = (40, 80, 220), ["yellow"] = (235, 200, 30), ["purple"] = (140, 60, 180),
    };

    /// <summary>Draws 1–<paramref name="maxShapes"/> shapes in distinct cells.</summary>
    public static Scene Draw(Random random, int minShapes = 1, int maxShapes = 5)
    {
        int count = random.Next(minShapes, maxShapes + 1);
        var cells = Enumerable.Range(0, 9).OrderBy(_ => random.Next()).Take(count).ToList();
        return new Scene(cells.Select(c => new Shape(Kinds[random.Next(Kinds.Length)], Colors[random.Next(Colors.Length)], random.Next(2) == 1, c % 3, c / 3)).ToList());
    }

    /// <summary>
    /// A scene with exactly <paramref name="matching"/> shapes drawn by <paramref name="match"/> and
    /// 0–<paramref name="maxOthers"/> drawn by <paramref name="other"/>, in random distinct cells: counts
    /// are then uniform by construction, so their prior tells a text-only model nothing.
    /// </summary>
    public static Scene WithCount(Random random, int matching, Func<Random, (string Kind, string Color)> match,
        Func<Random, (string Kind, string Color)> other, int maxOthers = 2)
    {
        int others = random.Next(maxOthers + 1);
        var cells = Enumerable.Range(0, 9).OrderBy(_ => random.Next()).Take(matching + others).ToList();
        var shapes = cells.Select((c, i) =>
        {
            var (kind, color) = i < matching ? match(random) : other(random);
            return new Shape(kind, color, random.Next(2) == 1, c % 3, c / 3);
        }).ToList();
        return new Scene(shapes);
    }

    /// <summary>RGB bytes of a size×size rendering on a light background.</summary>
    public byte[] Render(int size = 64)
    {
        var rgb = new byte[size * size * 3];
        Array.Fill(rgb, (byte)245);
        double cell = size / 3.0;
        foreach (var s in Shapes)
        {
            double cx = (s.Column + 0.5) * cell, cy = (s.Row + 0.5) * cell;
            double r = cell * (s.Large ? 0.42 : 0.24);
            var color = Rgb[s.Color];
            for (int y = 0; y < size; y++)
                for (int x = 0; x < size; x++)
                {
                    double dx = x + 0.5 - cx, dy = y + 0.5 - cy;
                    bool inside = s.Kind switch
                    {
                        "circle" => dx * dx + dy * dy <= r * r,
                        "square" => Math.Abs(dx) <= r * 0.85 && Math.Abs(dy) <= r * 0.85,
                        _ => dy <= r * 0.8 && dy >= -r && Math.Abs(dx) <= (dy + r) * 0.55, // apex up
                    };
                    if (!inside) continue;
                    int i = (y * size + x) * 3;
                    rgb[i] = color.R;
                    rgb[i + 1] = color.G;
                    rgb[i + 2] = color.B;
                }
        }
        return rgb;
    }

    /// <summary>
    /// Open questions about the scene with short answers (for instruction-style pretraining; the
    /// benchmark question families of <see cref="QuestionFactory"/> are kept for fine-tuning).
    /// </summary>
    public IEnumerable<(string Question, string Answer)> OpenQuestions(Random random)
    {
        foreach (var s in Shapes.GroupBy(x => x.Kind).Where(g => g.Count() == 1).Select(g => g.Single()))
            yield return ($"What color is the {s.Kind}?", s.Color);
        foreach (var s in Shapes.GroupBy(x => x.Color).Where(g => g.Count() == 1).Select(g => g.Single()))
            yield return ($"What shape is the {s.Color} object?", s.Kind);
        yield return ("How many shapes are there?", Shapes.Count.ToString());
        var probe = Shapes[random.Next(Shapes.Count)];
        string color = Colors[random.Next(Colors.Length)], kind = Kinds[random.Next(Kinds.Length)];
        yield return ($"Is there a {color} {kind}?", Shapes.Any(x => x.Color == color && x.Kind == kind) ? "yes" : "no");
        yield return ($"What is at the {Rows[probe.Row]} {Columns[probe.Column]}?", $"a {probe.Color} {probe.Kind}");
    }

    static readonly string[] Numbers = { "no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine" };
    static readonly string[] Rows = { "top", "middle", "bottom" };
    static readonly string[] Columns = { "left", "center", "right" };

    /// <summary>
    /// A reference caption. Shapes are described in reading order (rows top to bottom, left to right),
    /// so a caption is predictable from the image; the phrasings vary between references.
    /// </summary>
    public string Caption(Random random)
    {
        var ordered = Shapes.OrderBy(s => s.Row).ThenBy(s => s.Column).ToList();
        string List(Func<Shape, string> describe) => ordered.Count == 1
            ? describe(ordered[0])
            : string.Join(", ", ordered.Take(ordered.Count - 1).Select(describe)) + " and " + describe(ordered[^1]);
        return random.Next(3) switch
        {
            0 => List(s => $"a {s.Size} {s.Color} {s.Kind}"),
            1 => $"{Numbers[ordered.Count]} shape{(ordered.Count == 1 ? "" : "s")}: " + List(s => $"a {s.Color} {s.Kind}"),
            _ => List(s => $"a {s.Color} {s.Kind} at the {Rows[s.Row]} {Columns[s.Column]}"),
        };
    }
}
