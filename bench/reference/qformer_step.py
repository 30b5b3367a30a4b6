"""The PyTorch peer of `VlPeft.Bench qformer-step`: the same paper-size Q-Former LoRA training step.

InstructBLIP's Q-Former as Hugging Face Transformers writes it (InstructBlipQFormerModel, eager attention: post-LN BERT
blocks, cross-attention to [B, 257, 1408] image features on even layers for the 32 query positions, separate query and
text FFNs), LoRA r = 8, alpha = 8 on every sublayer of `qformer-lora-all` as HF PEFT computes it (x cast to the adapter
dtype, lora_B(lora_A(x)) * scaling added, the sum cast back), loss = mean of the squared fp32 last hidden state, AdamW on
the LoRA tensors only, train mode (dropout 0.1 as the config says). Written out here rather than imported so that it
needs only Debian's python3-torch. Prints one JSON line: steps/s and the forward/backward/optimizer medians.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN, LAYERS, HEADS, FFN, IMAGE_DIM, VOCAB, POSITIONS = 768, 12, 12, 3072, 1408, 30522, 512
BATCH, QUERIES, IMAGE_TOKENS, RANK, ALPHA, DROPOUT, EPS = 16, 32, 257, 8, 8, 0.1, 1e-12


class LoraLinear(nn.Module):
    """HF PEFT's lora.Linear forward with dropout 0: base, then the fp32 update on x cast to the adapter dtype."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base_layer = base
        self.lora_A = nn.Linear(base.in_features, RANK, bias=False)
        self.lora_B = nn.Linear(RANK, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = ALPHA / RANK

    def forward(self, x):
        result = self.base_layer(x)
        dtype = result.dtype
        x = x.to(self.lora_A.weight.dtype)
        result = result + self.lora_B(self.lora_A(x)) * self.scaling
        return result.to(dtype)


def linear(inp, out):
    return LoraLinear(nn.Linear(inp, out))


class Output(nn.Module):
    def __init__(self, inp):
        super().__init__()
        self.dense = linear(inp, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, kv_dim, cross):
        super().__init__()
        self.query = linear(HIDDEN, HIDDEN)
        # qformer-lora-all: self-attention q, v; cross-attention q, k, v, o.
        self.key = linear(kv_dim, HIDDEN) if cross else nn.Linear(kv_dim, HIDDEN)
        self.value = linear(kv_dim, HIDDEN)
        self.dropout = nn.Dropout(DROPOUT)
        self.output = Output(HIDDEN)
        if not cross:
            self.output.dense = nn.Linear(HIDDEN, HIDDEN)

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, HEADS, HIDDEN // HEADS).permute(0, 2, 1, 3)

    def forward(self, h, memory, mask):
        q, k, v = self.split(self.query(h)), self.split(self.key(memory)), self.split(self.value(memory))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(HIDDEN // HEADS)
        if mask is not None:
            scores = scores + mask
        probs = self.dropout(scores.softmax(-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(h.shape[0], h.shape[1], HIDDEN)
        return self.output(ctx, h)


class Layer(nn.Module):
    def __init__(self, index):
        super().__init__()
        self.attention = Attention(HIDDEN, cross=False)
        self.crossattention = Attention(IMAGE_DIM, cross=True) if index % 2 == 0 else None
        self.intermediate, self.output = linear(HIDDEN, FFN), Output(FFN)
        self.intermediate_query, self.output_query = linear(HIDDEN, FFN), Output(FFN)

    def forward(self, h, mask, image):
        attended = self.attention(h, h, mask)
        query = attended[:, :QUERIES]
        if self.crossattention is not None:
            query = self.crossattention(query, image, None)
        result = self.output_query(F.gelu(self.intermediate_query(query)), query)
        if attended.shape[1] > QUERIES:
            text = attended[:, QUERIES:]
            result = torch.cat([result, self.output(F.gelu(self.intermediate(text)), text)], 1)
        return result


class QFormer(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.position_embeddings = nn.Embedding(POSITIONS, HIDDEN)
        self.layernorm = nn.LayerNorm(HIDDEN, eps=EPS)
        self.dropout = nn.Dropout(DROPOUT)
        self.layer = nn.ModuleList(Layer(i) for i in range(LAYERS))

    def forward(self, queries, image, ids):
        mask = None
        h = queries
        if ids is not None:
            positions = torch.arange(ids.shape[1]).unsqueeze(0)
            h = torch.cat([queries, self.word_embeddings(ids) + self.position_embeddings(positions)], 1)
            ones = torch.ones(ids.shape[0], h.shape[1], dtype=h.dtype)
            mask = ((1.0 - ones[:, None, None, :]) * torch.finfo(h.dtype).min)
        h = self.dropout(self.layernorm(h))
        for layer in self.layer:
            h = layer(h, mask, image)
        return h


def peak():
    """Square matmuls at n = 1024 and 2048 in fp32 and bf16 (best of 5), and the BLAS and allocator this process loaded."""
    result = {"side": "pytorch", "torch": torch.__version__}
    for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for n in (1024, 2048):
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            a @ b
            best = min(timed(lambda: a @ b) for _ in range(5))
            result[f"{label}_{n}_gflops"] = 2 * n ** 3 / best / 1e9
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split()[-1] for line in maps if any(k in line for k in ("blas", "lapack", "tcmalloc", "mkl"))})
    result["libraries"] = libs
    print(json.dumps(result))


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--text", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak", action="store_true", help="print the matmul GFLOP/s of this build instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak:
        return peak()
    torch.manual_seed(0)
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    model = QFormer()
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in model.named_modules():
        if not name.endswith(("lora_A", "lora_B")):
            for p in module.parameters(recurse=False):
                p.data = p.data.to(dtype)   # the frozen base in the run's dtype, LoRA stays fp32
        else:
            module.weight.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
    queries = torch.randn(BATCH, QUERIES, HIDDEN).to(dtype)
    image = torch.randn(BATCH, IMAGE_TOKENS, IMAGE_DIM).to(dtype)
    ids = torch.randint(1000, (BATCH, args.text)) if args.text > 0 else None
    model.train()
    forward, backward, step = [], [], []
    for i in range(args.steps + 3):
        start = time.perf_counter()
        loss = model(queries, image, ids).float().pow(2).mean()
        f = time.perf_counter() - start
        loss.backward()
        b = time.perf_counter() - start - f
        optimizer.step()
        optimizer.zero_grad()
        o = time.perf_counter() - start - f - b
        if i >= 3:
            forward.append(f); backward.append(b); step.append(o)
    median = lambda x: sorted(x)[len(x) // 2]
    total = median(forward) + median(backward) + median(step)
    print(json.dumps({"side": "pytorch", "dtype": args.dtype, "text": args.text, "steps_per_s": 1 / total,
                      "forward_ms": 1e3 * median(forward), "backward_ms": 1e3 * median(backward), "optimizer_ms": 1e3 * median(step),
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "trainable": sum(p.numel() for p in trainable)}))


if __name__ == "__main__":
    main()
