"""CLIP in your own Lightly-style script: the objective by name, everything else yours.

A torchvision ResNet-18 and the frozen MiniLM text model as backbones, a plain
``pl.Trainer``, the embedded digits + captions (nothing is downloaded). The
only things taken from lightly-mm-plugins are the objective and the view,
by name, where a Lightly script puts ``NTXentLoss`` and its transform.

    python examples/lightly/clip.py --epochs 1
    python examples/lightly/clip.py --max-steps 3        # a quick check (CI)
"""

from __future__ import annotations

import argparse

import pytorch_lightning as pl
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import lightly_mm_plugins as lmm
from lightly_mm_plugins.api import EncodedBatch
from lightly_mm_plugins.data import ViewDataset, collate_samples, load_dataset
from lightly_mm_plugins.encoders import frozen_text_encoder


def resnet18_small() -> nn.Module:
    """torchvision ResNet-18 with a stem for 16-32 px images; 512-d pooled features."""
    resnet = torchvision.models.resnet18(weights=None)
    resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    resnet.maxpool = nn.Identity()
    resnet.fc = nn.Identity()
    return resnet


class CLIPModel(pl.LightningModule):
    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.image_backbone = resnet18_small()
        # Frozen sentence-transformers model: runs under no_grad (not inference_mode),
        # so the objective's heads train on its output.
        self.text_backbone = frozen_text_encoder()
        self.criterion = lmm.create_objective(
            "clip", embedding_dims={"image": 512, "text": self.text_backbone.feature_dim}
        )
        self.lr = lr

    def training_step(self, batch, batch_idx):
        images = batch.observations["image"][:, 0]  # (N, 3, H, W): one view
        captions = [row[0] for row in batch.observations["text"]]  # one caption each
        encoded = EncodedBatch.from_tensors(
            {"image": self.image_backbone(images), "text": self.text_backbone(captions)},
            instance_ids=batch.instance_ids,
        )
        out = self.criterion(encoded)
        self.log("train_loss", out.loss, prog_bar=True, batch_size=batch.batch_size)
        return out.loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr)


def make_loader(view_name: str, batch_size: int, limit: int | None) -> DataLoader:
    data = load_dataset("default", split="train")
    if limit:
        data = data.subset(list(range(limit)))
    view = lmm.create_view(view_name, modalities=data.modalities, image_size=16)
    return DataLoader(
        ViewDataset(data, view, train=True),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=lambda samples: collate_samples(samples, data.modalities),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N steps")
    args = parser.parse_args()
    fast = args.max_steps > 0
    loader = make_loader("clip", args.batch_size, limit=args.batch_size * 4 if fast else None)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=not fast,
    )
    trainer.fit(CLIPModel(), loader)
    print(f"final train_loss {float(trainer.callback_metrics['train_loss']):.4f}")


if __name__ == "__main__":
    main()
