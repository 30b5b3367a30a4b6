using System.Text.Json;

namespace VlPeft.Data.Captions;

/// <summary>
/// Caption references in either COCO caption format (<c>{"images":[{"id"}],"annotations":[{"image_id","caption"}]}</c>)
/// or a Karpathy <c>dataset_coco.json</c> / <c>dataset_flickr30k.json</c> (<c>split</c> required). Image ids:
/// COCO ids as written; Karpathy: <c>cocoid</c> when present, else the file name's stem (Flickr30k).
/// </summary>
public static class CaptionReader
{
    /// <param name="imageRoot">Folder the Karpathy filepath/filename are relative to (default: the JSON's folder).</param>
    public static IReadOnlyList<CaptionRecord> Read(string path, string? split = null, string? imageRoot = null)
    {
        using var doc = DatasetJson.Parse(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("images", out var images) || images.ValueKind != JsonValueKind.Array)
            throw new BadInputException("caption file has no 'images' array (expected COCO caption format or a Karpathy dataset_*.json)", path);
        return root.TryGetProperty("annotations", out var annotations) ? ReadCoco(images, annotations, path)
            : ReadKarpathy(images, split, path, imageRoot ?? Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    static IReadOnlyList<CaptionRecord> ReadCoco(JsonElement images, JsonElement annotations, string path)
    {
        var refs = new Dictionary<string, List<string>>();
        var order = new List<string>();
        foreach (var image in images.EnumerateArray())
        {
            string id = Id(image, "id", path);
            if (!refs.TryAdd(id, new List<string>())) throw DatasetJson.Bad(id, "image listed twice", path);
            order.Add(id);
        }
        foreach (var a in annotations.EnumerateArray())
        {
            string id = Id(a, "image_id", path);
            if (!refs.TryGetValue(id, out var list)) throw DatasetJson.Bad(id, "annotation for an image not in 'images'", path);
            list.Add(DatasetJson.String(a, "caption", id, path));
        }
        foreach (var id in order)
            if (refs[id].Count == 0) throw DatasetJson.Bad(id, "image has no reference caption", path);
        return order.Select(id => new CaptionRecord { ImageId = id, References = refs[id] }).ToList();
    }

    static IReadOnlyList<CaptionRecord> ReadKarpathy(JsonElement images, string? split, string path, string imageRoot)
    {
        if (split is null) throw new BadInputException("a Karpathy dataset file needs --split (train, restval, val or test)", path);
        var records = new List<CaptionRecord>();
        foreach (var image in images.EnumerateArray())
        {
            string filename = DatasetJson.String(image, "filename", "?", path);
            if (DatasetJson.String(image, "split", filename, path) != split) continue;
            string id = image.TryGetProperty("cocoid", out var coco) ? coco.GetRawText() : Path.GetFileNameWithoutExtension(filename);
            if (!image.TryGetProperty("sentences", out var sentences) || sentences.ValueKind != JsonValueKind.Array)
                throw DatasetJson.Bad(filename, "missing 'sentences'", path);
            var refs = sentences.EnumerateArray().Select(s => DatasetJson.String(s, "raw", filename, path)).ToList();
            string folder = image.TryGetProperty("filepath", out var fp) && fp.ValueKind == JsonValueKind.String ? fp.GetString()! : "";
            records.Add(new CaptionRecord { ImageId = id, References = refs, Split = split, ImagePath = DatasetPaths.Inside(imageRoot, Path.Combine(folder, filename), filename, path) });
        }
        if (records.Count == 0) throw new BadInputException($"no image has split '{split}'", path);
        return records;
    }

    static string Id(JsonElement e, string field, string path) =>
        e.TryGetProperty(field, out var v) && (v.ValueKind is JsonValueKind.Number or JsonValueKind.String)
            ? (v.ValueKind == JsonValueKind.String ? v.GetString()! : v.GetRawText())
            : throw new BadInputException($"an entry lacks '{field}'", path);
}
