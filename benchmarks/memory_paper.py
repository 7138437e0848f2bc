"""GPU memory of a consistency-training step at the `paper` presets, counted on the meta device (no
memory, no arithmetic: seconds on any machine), for the README's GPU section.

For each backbone at 64 px and batch 32, in fp32:
- states: online weights, their gradients, the optimizer's two moments, the target θ⁻ and the sample EMA
  (6 × 4 bytes per parameter); a checkpoint holds all but the gradients (5 × 4 bytes per parameter);
- activations: every tensor autograd saves for the backward pass of the online forward f_θ(x + σz, σ)
  and of the distance (LPIPS at 224 px, the `ct` recipe's; pseudo-Huber saves next to nothing),
  each storage counted once. The target's forward runs without gradient and saves nothing. Attention
  counts what CUDA's fused kernels save (q, k, v, the output and one log-sum-exp per query), not the
  N×N weights that the meta device's reference implementation would keep.
The sum is a floor for the step's peak: the allocator's cache, cuDNN/cuBLAS workspaces and the
gradients of activations during the backward pass come on top. Under bf16 autocast most saved tensors
are bf16 copies, so the activations take about half as much.

    python benchmarks/memory_paper.py    # → benchmarks/results/memory_paper/memory.md and memory.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from cmzoo.engine.distances import LPIPSDistance, pseudo_huber, pseudo_huber_c
from cmzoo.engine.loss import consistency_loss
from cmzoo.engine.parameterization import ConsistencyFunction
from cmzoo.registry import build_backbone, get_backbone

BACKBONES = ("unet", "uvit", "dit", "func")
GIB = 2**30


class FusedAttention(torch.autograd.Function):
    """Shapes only: scaled-dot-product attention saving what flash / memory-efficient attention saves."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1]))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return FusedAttention.apply(q, k, v)


def saved_bytes(step) -> int:
    """Bytes of the distinct storages autograd saves while `step()` builds its graph (meta tensors)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage()._cdata] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(storages.values())


def lpips_on_meta() -> LPIPSDistance:
    """LPIPS (AlexNet) on the meta device; its shapes need no trained weights, so a stand-in file is used."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alexnet-shapes-only.pth"
        features = torchvision.models.alexnet(weights=None).features.state_dict()
        torch.save({f"features.{k}": v for k, v in features.items()}, path)
        return LPIPSDistance(path).to("meta")


def measure(name: str, resolution: int, batch: int, lpips: LPIPSDistance) -> dict[str, float]:
    spec = get_backbone(name)
    with torch.device("meta"):
        online = ConsistencyFunction(build_backbone(spec, spec.make_config("paper"), resolution))
        target = ConsistencyFunction(build_backbone(spec, spec.make_config("paper"), resolution)).requires_grad_(False)
        x = torch.empty(batch, 3, resolution, resolution)
        sigma, weight = torch.full((batch,), 1.0), torch.ones(batch)
    params = sum(p.numel() for p in online.parameters())
    c = pseudo_huber_c(3 * resolution * resolution)
    distances = {"lpips": lpips, "pseudo_huber": lambda a, b: pseudo_huber(a, b, c)}
    saved = {key: saved_bytes(lambda d=d: consistency_loss(online, target, x, sigma, sigma * 1.1, x, weight, d))
             for key, d in distances.items()}
    return {"params": params, "states_gib": 24 * params / GIB, "checkpoint_gib": 20 * params / GIB,
            **{f"activations_{k}_gib": v / GIB for k, v in saved.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/memory_paper")
    args = parser.parse_args()
    lpips = lpips_on_meta()
    F.scaled_dot_product_attention = fused_attention  # timm's attention looks it up at every call
    rows = {name: measure(name, args.resolution, args.batch_size, lpips) for name in BACKBONES}
    lines = [
        f"# Training-step memory at the `paper` presets, {args.resolution} px, batch {args.batch_size}, fp32",
        "",
        "Counted on the meta device by `python benchmarks/memory_paper.py` (see its docstring): states = "
        "weights, gradients, two optimizer moments, target and EMA (24 B/parameter); activations = the "
        "tensors autograd saves for the backward pass, each storage once, attention as CUDA's fused kernels "
        "save it. A floor for the peak: caches, "
        "workspaces and the backward's transients come on top; bf16 autocast about halves the activations.",
        "",
        "| backbone | parameters | states | saved activations, LPIPS (`ct`) | saved activations, pseudo-Huber | "
        "states + activations (LPIPS) | checkpoint |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['params'] / 1e6:.1f}M | {r['states_gib']:.1f} GiB | "
                     f"{r['activations_lpips_gib']:.1f} GiB | {r['activations_pseudo_huber_gib']:.1f} GiB | "
                     f"{r['states_gib'] + r['activations_lpips_gib']:.1f} GiB | {r['checkpoint_gib']:.1f} GiB |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.md").write_text("\n".join(lines) + "\n")
    (out / "memory.json").write_text(json.dumps({"resolution": args.resolution, "batch_size": args.batch_size,
                                                 "torch": torch.__version__, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
