"""Run under torchrun (2 processes, gloo): loss and gradients of one DDP step, written by rank 0.

Usage: torchrun --nproc_per_node 2 ddp_check.py MODEL_DIR VIEWS ALPHA OUT.pt [GRADIENT_SCALE]
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from simcse.modeling.encoder import Encoder
from simcse.modeling.model_dir import read_backbone
from simcse.training.data import Collator
from simcse.training.losses import ContrastiveLoss
from simcse.training.model import SimCSEModel

ROWS = [("a man is playing a guitar", "a man plays music", "a woman is eating"),
        ("two dogs run in the park", "dogs are running", "a cat is sitting"),
        ("the children eat food", "kids are eating", "the children sleep"),
        ("a boy plays with a red ball", "a child plays", "a girl is riding a horse"),
        ("people walk on the street", "persons walk in the city", "nobody is on the street"),
        ("a cat is sitting under the tree", "a cat sits", "a dog runs"),
        ("young women ride bikes", "women on bikes", "old men walk"),
        ("three birds sit on the road", "birds on a road", "a car on the road")]  # fmt: skip


def embeddings(model_dir: str, rows: list[tuple[str, ...]]) -> torch.Tensor:
    """The unit-norm [CLS] embeddings of the rows' first sentences (to check the test is not degenerate)."""
    model = SimCSEModel(Encoder.from_backbone(read_backbone(model_dir), "cls"))
    batch = Collator(model.encoder.tokenizer, 16, views=2)([r[:1] for r in rows])
    with torch.no_grad():
        emb = model(batch["input_ids"], batch["attention_mask"])[0]
    return torch.nn.functional.normalize(emb.view(len(rows), 2, -1)[:, 0], dim=-1)


def step(
    model_dir: str, views: int, alpha: float, rows: list[tuple[str, ...]], ddp: bool, scale: float = 1.0
):
    torch.manual_seed(0)
    model = SimCSEModel(Encoder.from_backbone(read_backbone(model_dir), "cls"))
    model.train()
    forward = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    data = [r[:1] for r in rows] if views == 2 and alpha == 1.0 else [r[:views] for r in rows]
    batch = Collator(model.encoder.tokenizer, 16, views=views if len(data[0]) > 1 else 2)(data)
    emb = forward(batch["input_ids"], batch["attention_mask"])[0]
    loss = ContrastiveLoss(0.05, alpha, scale)(emb.view(len(data), -1, emb.shape[-1]))
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def main() -> None:
    model_dir, views, alpha, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    scale = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    per = len(ROWS) // world
    loss, grads = step(model_dir, views, alpha, ROWS[rank * per : (rank + 1) * per], ddp=True, scale=scale)
    dist.all_reduce(loss)
    loss /= world
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out)
    dist.barrier()  # leave together: a rank tearing gloo down while the other still works can abort
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
