namespace VlPeft.Data.Synthetic;

/// <summary>
/// Question families that need the image (counting, colour, shape, relative position, comparison),
/// one that needs the image and the hint together (a rule defined in the hint), and a text-only one
/// (so ScienceQA's "no context" category is populated). The correct answer's position comes from an
/// <see cref="AnswerBalancer"/>: balanced across positions within each family, and unpredictable.
/// </summary>
public static class QuestionFactory
{
    public static readonly string[] ImageFamilies = { "count", "color", "shape", "position", "compare", "hint-rule" };

    public static SyntheticQuestion Make(string family, Random random, AnswerBalancer balancer)
    {
        for (int attempt = 0; ; attempt++)
        {
            var scene = Scene.Draw(random, family == "count" || family == "hint-rule" ? 1 : 2, 5);
            var q = family switch
            {
                "count" => Count(scene, random),
                "color" => ColorOf(scene, random),
                "shape" => ShapeOf(scene, random),
                "position" => Position(scene, random),
                "compare" => Compare(scene, random),
                "hint-rule" => HintRule(scene, random),
                "text" => TextOnly(random),
                _ => throw new ArgumentException($"unknown family {family}"),
            };
            if (q is not null) return Place(q, balancer.Next(family, q.Choices.Count, random), random);
            if (attempt > 1000) throw new InvalidOperationException($"could not draw a '{family}' question");
        }
    }

    /// <summary>Puts the correct choice at <paramref name="position"/>, the distractors in random order around it.</summary>
    static SyntheticQuestion Place(SyntheticQuestion q, int position, Random random)
    {
        var distractors = q.Choices.Where((_, i) => i != q.Answer).OrderBy(_ => random.Next()).ToList();
        distractors.Insert(position, q.Choices[q.Answer]);
        return q with { Choices = distractors, Answer = position };
    }

    static T Pick<T>(IReadOnlyList<T> items, Random random) => items[random.Next(items.Count)];

    static SyntheticQuestion Count(Scene _, Random random)
    {
        bool byColor = random.Next(2) == 0;
        string attribute = byColor ? Pick(Scene.Colors, random) : Pick(Scene.Kinds, random);
        var (n, choices) = CountAndOptions(random);
        var scene = byColor
            ? Scene.WithCount(random, n, r => (Pick(Scene.Kinds, r), attribute), r => (Pick(Scene.Kinds, r), Pick(Scene.Colors.Where(c => c != attribute).ToList(), r)))
            : Scene.WithCount(random, n, r => (attribute, Pick(Scene.Colors, r)), r => (Pick(Scene.Kinds.Where(k => k != attribute).ToList(), r), Pick(Scene.Colors, r)));
        string noun = byColor ? $"{attribute} shapes" : $"{attribute}s";
        return new SyntheticQuestion("count", $"How many {noun} are in the picture?", choices, 0, "", "Count each matching shape once.", $"There are {n} {noun}.",
            scene, "natural science", $"grade{1 + random.Next(4)}", "units-and-measurement");
    }

    static SyntheticQuestion? ColorOf(Scene scene, Random random)
    {
        var unique = scene.Shapes.GroupBy(s => s.Kind).Where(g => g.Count() == 1).Select(g => g.Single()).ToList();
        if (unique.Count == 0) return null;
        var target = unique[random.Next(unique.Count)];
        var choices = new[] { target.Color }.Concat(Scene.Colors.Where(c => c != target.Color).OrderBy(_ => random.Next()).Take(2)).ToList();
        return new SyntheticQuestion("color", $"What color is the {target.Kind}?", choices, 0, "", "", $"The {target.Kind} is {target.Color}.",
            scene, "natural science", $"grade{1 + random.Next(6)}", "physics");
    }

    static SyntheticQuestion? ShapeOf(Scene scene, Random random)
    {
        var unique = scene.Shapes.GroupBy(s => s.Color).Where(g => g.Count() == 1).Select(g => g.Single()).ToList();
        if (unique.Count == 0) return null;
        var target = unique[random.Next(unique.Count)];
        return new SyntheticQuestion("shape", $"What shape is the {target.Color} object?", Scene.Kinds.ToList(), Array.IndexOf(Scene.Kinds, target.Kind), "", "", $"The {target.Color} object is a {target.Kind}.",
            scene, "language science", $"grade{2 + random.Next(5)}", "vocabulary");
    }

    static SyntheticQuestion? Position(Scene scene, Random random)
    {
        var named = scene.Shapes.GroupBy(s => s.Name).Where(g => g.Count() == 1).Select(g => g.Single()).ToList();
        var pairs = (from a in named from b in named where a != b && (a.Column != b.Column || a.Row != b.Row) select (a, b)).ToList();
        if (pairs.Count == 0) return null;
        var (first, second) = pairs[random.Next(pairs.Count)];
        bool horizontal = first.Column != second.Column && (first.Row == second.Row || random.Next(2) == 0);
        string question = horizontal ? $"Is the {first.Name} to the left of the {second.Name}?" : $"Is the {first.Name} above the {second.Name}?";
        bool yes = horizontal ? first.Column < second.Column : first.Row < second.Row;
        return new SyntheticQuestion("position", question, new[] { "yes", "no" }, yes ? 0 : 1, "", "", "",
            scene, "social science", $"grade{7 + random.Next(6)}", "geography");
    }

    static SyntheticQuestion? Compare(Scene scene, Random random)
    {
        var colors = scene.Shapes.Select(s => s.Color).Distinct().ToList();
        if (colors.Count < 2) return null;
        var pick = colors.OrderBy(_ => random.Next()).Take(2).ToList();
        int a = scene.Shapes.Count(s => s.Color == pick[0]), b = scene.Shapes.Count(s => s.Color == pick[1]);
        if (a == b) return null;
        return new SyntheticQuestion("compare", $"Which color appears more often: {pick[0]} or {pick[1]}?", pick, a > b ? 0 : 1, "", "", "",
            scene, "natural science", $"grade{7 + random.Next(6)}", "science-and-engineering-practices");
    }

    /// <summary>Needs image and hint: the hint names which shapes count; only the image says how many there are.</summary>
    static SyntheticQuestion HintRule(Scene _, Random random)
    {
        string kind = Pick(Scene.Kinds, random), color = Pick(Scene.Colors, random);
        var (n, choices) = CountAndOptions(random);
        // Distractors share the colour or the kind, so the hint's exact rule is needed to count.
        var scene = Scene.WithCount(random, n, _ => (kind, color),
            r => r.Next(2) == 0 ? (Pick(Scene.Kinds.Where(k => k != kind).ToList(), r), color) : (kind, Pick(Scene.Colors.Where(c => c != color).ToList(), r)), maxOthers: 3);
        var target = new Shape(kind, color, false, 0, 0);
        string word = new[] { "blick", "wug", "dax", "fep" }[random.Next(4)];
        string hint = $"In this picture, every {target.Color} {target.Kind} is called a {word}.";
        return new SyntheticQuestion("hint-rule", $"How many {word}s are in the picture?", choices, 0, hint, $"A {word} is defined in the text.", "",
            scene, "social science", $"grade{3 + random.Next(8)}", "culture");
    }

    /// <summary>
    /// A count n from 1 to 4 and its options, three consecutive counts with n first: the window is
    /// drawn first (1–3 or 2–4) and n uniformly inside it, so every option of a window is equally
    /// likely to be right and the options tell a text-only model nothing. (Drawing n first and placing
    /// a window around it leaked: options 4–6 could only mean 4, and 1 was right half the time in 1–3.)
    /// </summary>
    static (int N, List<string> Choices) CountAndOptions(Random random)
    {
        int start = 1 + random.Next(2);
        int n = start + random.Next(3);
        var options = Enumerable.Range(start, 3).Where(v => v != n).Prepend(n).Select(v => v.ToString()).ToList();
        return (n, options);
    }

    /// <summary>Text-only questions (no image, no hint) for ScienceQA's NO category.</summary>
    static SyntheticQuestion TextOnly(Random random)
    {
        string color = Scene.Colors[random.Next(Scene.Colors.Length)];
        var others = new[] { "table", "window", "river", "pencil" }.OrderBy(_ => random.Next()).Take(2);
        return new SyntheticQuestion("text", "Which word names a color?", new[] { color }.Concat(others).ToList(), 0, "", "", $"{color} is a color.",
            null, "language science", $"grade{1 + random.Next(12)}", "word-study");
    }
}

/// <summary>
/// Balances the correct answer's position per question family and number of choices: each round of
/// n questions uses every position once, in a fresh random order. A fixed cycle would leak: with the
/// families interleaved in a fixed order, each family would always get the same position, and a model
/// (or the text-only baseline) could answer from the question's wording alone.
/// </summary>
public sealed class AnswerBalancer
{
    readonly Dictionary<(string Family, int Choices), Queue<int>> rounds = new();

    public int Next(string family, int choices, Random random)
    {
        if (!rounds.TryGetValue((family, choices), out var round) || round.Count == 0)
            rounds[(family, choices)] = round = new Queue<int>(Enumerable.Range(0, choices).OrderBy(_ => random.Next()));
        return round.Dequeue();
    }
}
