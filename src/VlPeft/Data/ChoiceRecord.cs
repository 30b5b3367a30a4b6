namespace VlPeft.Data;

/// <summary>
/// A multiple-choice question about an image (ScienceQA, IconQA): everything prompts, training
/// and the official category scores need, independent of the source format.
/// </summary>
public sealed record ChoiceRecord
{
    public required string Id { get; init; }
    /// <summary>Absolute image path, or null when the problem has no image.</summary>
    public string? ImagePath { get; init; }
    public required string Question { get; init; }
    public required IReadOnlyList<string> Choices { get; init; }
    /// <summary>0-based index of the correct choice.</summary>
    public required int Answer { get; init; }
    /// <summary>ScienceQA's hint (textual context); "" when absent.</summary>
    public string Hint { get; init; } = "";
    public string Lecture { get; init; } = "";
    public string Solution { get; init; } = "";
    public string Subject { get; init; } = "";
    public string Grade { get; init; } = "";
    public string Topic { get; init; } = "";
    public string Category { get; init; } = "";
    public string Skill { get; init; } = "";
    public string Task { get; init; } = "";
    public string Split { get; init; } = "";
    /// <summary>Whether the record has an image (ScienceQA: image field non-null), whether or not the file was checked.</summary>
    public bool HasImage { get; init; }

    public bool HasText => Hint.Length > 0;
    public string AnswerText => Choices[Answer];
}

/// <summary>An open-ended question with annotator answers (VQAv2, VizWiz).</summary>
public sealed record OpenQuestionRecord
{
    public required string Id { get; init; }
    public string? ImagePath { get; init; }
    public required string Question { get; init; }
    /// <summary>The annotators' answers (10 for VQAv2 and VizWiz), as stored.</summary>
    public required IReadOnlyList<string> Answers { get; init; }
    public string AnswerType { get; init; } = "";
    public string QuestionType { get; init; } = "";
    public string MultipleChoiceAnswer { get; init; } = "";
    public bool? Answerable { get; init; }
    /// <summary>Soft classification targets per answer (VQAv2 classifier data: the VL-T5/LXMERT <c>label</c> dict); null elsewhere.</summary>
    public IReadOnlyDictionary<string, double>? AnswerScores { get; init; }
}

/// <summary>An image with its reference captions (COCO, Flickr30k Karpathy).</summary>
public sealed record CaptionRecord
{
    public required string ImageId { get; init; }
    public string? ImagePath { get; init; }
    public required IReadOnlyList<string> References { get; init; }
    public string Split { get; init; } = "";
}
