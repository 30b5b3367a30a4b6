using TorchSharp;
using VlPeft.Models.Configs;
using VlPeft.Nn;
using static TorchSharp.torch;
using Linear = VlPeft.Nn.Linear;

namespace VlPeft.Models.Vision;

/// <summary>The ViT MLP of BLIP's EVA and of CLIP (HF names <c>mlp.fc1</c>, <c>mlp.fc2</c>): fc2(act(fc1(x))).</summary>
sealed class VisionMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear fc1;
    readonly Linear fc2;
    readonly Func<Tensor, Tensor> act;

    public VisionMlp(VisionConfig c, Device? device) : base("mlp")
    {
        fc1 = new Linear(c.HiddenSize, c.IntermediateSize, device: device);
        fc2 = new Linear(c.IntermediateSize, c.HiddenSize, device: device);
        act = Activations.Get(c.HiddenAct);
        RegisterComponents();
    }

    public override Tensor forward(Tensor h) => fc2.call(act(fc1.call(h)));
}
