using static TorchSharp.torch;

namespace VlPeft.Models;

/// <summary>
/// Composites whose two towers are pretrained apart, as the routing paper's ViT and RoBERTa / GPT-2 are (the demo
/// pretrains tiny ones on the synthetic suite): the image tower alone and the text tower alone, neither seeing
/// the other's input.
/// </summary>
public interface ITowerPretraining
{
    /// <summary>The image tower's pooled feature [B, D] (x_v).</summary>
    Tensor PooledImage(Tensor pixelValues);

    /// <summary>The text tower's own pretraining loss on text alone (GPT-2: next token; RoBERTa: masked tokens).</summary>
    Tensor TextOnlyLoss(Tensor inputIds, Tensor attentionMask, int maskTokenId, Random random);

    /// <summary>The longest text the text tower takes alone (its positions).</summary>
    int MaxTextTokens { get; }

    /// <summary>The text tower's word embedding matrix [V, D].</summary>
    Tensor WordEmbeddingMatrix { get; }
}
